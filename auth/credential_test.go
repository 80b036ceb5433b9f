package auth

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestAgentCredentialRoundTrip(t *testing.T) {
	c, err := NewAgentCredential("h1", "pi-1")
	if err != nil {
		t.Fatal(err)
	}
	text := c.Encode()
	if !strings.HasPrefix(text, "hmq1.h1.pi-1.") || len(text) != len("hmq1.h1.pi-1.")+43 {
		t.Fatalf("credential %q has the wrong shape", text)
	}
	p, err := ParseAgentCredential(text)
	if err != nil {
		t.Fatal(err)
	}
	if p.Home != "h1" || p.Agent != "pi-1" || !bytes.Equal(p.Secret, c.Secret) {
		t.Fatalf("parsed %+v, want %+v", p, c)
	}
	if !p.Matches(c.Hash()) {
		t.Fatal("a credential does not match its own hash")
	}
	other, _ := NewAgentCredential("h1", "pi-1")
	if other.Matches(c.Hash()) {
		t.Fatal("another secret matches the hash")
	}
	moved := AgentCredential{Home: "h2", Agent: "pi-1", Secret: c.Secret}
	if moved.Matches(c.Hash()) {
		t.Fatal("the same secret under another home matches the hash")
	}
	if bytes.Contains(c.Hash(), c.Secret) {
		t.Fatal("hash contains the secret")
	}
}

func TestAgentCredentialNeverPrintsSecret(t *testing.T) {
	c, _ := NewAgentCredential("h1", "pi")
	secret := c.Encode()[len("hmq1.h1.pi."):]
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "cred", c)
	for name, s := range map[string]string{"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c), "slog": buf.String()} {
		if strings.Contains(s, secret) {
			t.Errorf("%s prints the secret: %s", name, s)
		}
	}
}

func TestParseAgentCredentialRefuses(t *testing.T) {
	good, _ := NewAgentCredential("h1", "pi")
	secret := good.Encode()[len("hmq1.h1.pi."):]
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "starts with"},
		{"no prefix", "h1.pi." + secret, "starts with"},
		{"old prefix", "hmq0.h1.pi." + secret, "starts with"},
		{"missing agent", "hmq1.h1." + secret, "looks like"},
		{"upper-case home", "hmq1.H1.pi." + secret, "invalid home or agent"},
		{"empty home", "hmq1..pi." + secret, "invalid home or agent"},
		{"dot in secret", "hmq1.h1.pi." + secret + ".x", "unpadded base64url"},
		{"short secret", "hmq1.h1.pi." + secret[:42], "unpadded base64url"},
		{"padded secret", "hmq1.h1.pi." + secret + "=", "unpadded base64url"},
		{"std base64", "hmq1.h1.pi." + strings.Repeat("+", 43), "unpadded base64url"},
		{"newline in secret", "hmq1.h1.pi." + secret[:20] + "\n" + secret[20:], "unpadded base64url"},
		{"too long", "hmq1." + strings.Repeat("a", 300), "longer than any"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAgentCredential(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseAgentCredential(%q) = %v, want an error with %q", tc.in, err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error repeats the secret: %v", err)
			}
		})
	}
}

func TestNewAgentCredentialRefusesBadIDs(t *testing.T) {
	for _, ids := range [][2]string{{"", "pi"}, {"h1", ""}, {"H1", "pi"}, {"h1", "pi.x"}, {"h/1", "pi"}} {
		if _, err := NewAgentCredential(ids[0], ids[1]); err == nil {
			t.Errorf("NewAgentCredential(%q, %q) succeeded", ids[0], ids[1])
		}
	}
}

// FuzzParseAgentCredential: parsing never panics, and whatever parses is
// canonical: encoding it again gives the same text, so two spellings never
// name one credential.
func FuzzParseAgentCredential(f *testing.F) {
	c, _ := NewAgentCredential("h1", "pi")
	f.Add(c.Encode())
	f.Add("hmq1.h1.pi.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("hmq1.a.b.")
	f.Add("hmq1...")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseAgentCredential(s)
		if err != nil {
			return
		}
		if p.Encode() != s {
			t.Fatalf("%q parses but encodes back as %q", s, p.Encode())
		}
		if len(p.Secret) != CredentialSecretSize {
			t.Fatalf("secret of %d bytes", len(p.Secret))
		}
		if !p.Matches(p.Hash()) {
			t.Fatal("hash does not match")
		}
	})
}
