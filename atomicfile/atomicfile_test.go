package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, tc := range []struct {
		name string
		data string
		perm os.FileMode
	}{
		{"creates", "first", 0o600},
		{"replaces", "second, longer than the first", 0o600},
		{"replaces with less", "3", 0o644},
	} {
		if err := WriteFile(p, []byte(tc.data), tc.perm); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != tc.data {
			t.Fatalf("%s: read %q %v, want %q", tc.name, b, err, tc.data)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != tc.perm {
			t.Errorf("%s: mode %v, want %v", tc.name, st.Mode().Perm(), tc.perm)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestWriteFileFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub")
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	// A folder cannot be replaced by a file: the rename fails.
	if err := WriteFile(p, []byte("x"), 0o600); err == nil {
		t.Fatal("replacing a folder succeeded")
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("writing into a missing folder succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}
