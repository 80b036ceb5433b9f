package gpiosim

import (
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
)

func TestBankMakesPinsOnceByName(t *testing.T) {
	b := New()
	p1, err := b.Pin("GPIO17")
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := b.Pin("GPIO17")
	if p1 != p2 {
		t.Fatal("the same name gave two pins")
	}
	if _, err := b.Pin(""); err == nil {
		t.Fatal("a pin with no name was made")
	}
	if got := b.Names(); len(got) != 1 || got[0] != "GPIO17" {
		t.Fatalf("Names() = %v", got)
	}
}

func TestOutRecordsChanges(t *testing.T) {
	b := New()
	var seen []gpio.Level
	b.OnChange(func(_ string, l gpio.Level) { seen = append(seen, l) })
	p := b.Get("relay")
	for _, l := range []gpio.Level{gpio.Low, gpio.Low, gpio.High, gpio.High, gpio.Low} {
		if err := p.Out(l); err != nil {
			t.Fatal(err)
		}
	}
	h := p.History()
	want := []gpio.Level{gpio.Low, gpio.High, gpio.Low}
	if len(h) != len(want) || len(seen) != len(want) {
		t.Fatalf("history %v, callbacks %v; want levels %v", h, seen, want)
	}
	for i := range want {
		if h[i].Level != want[i] || seen[i] != want[i] {
			t.Fatalf("change %d: history %v callback %v, want %v", i, h[i].Level, seen[i], want[i])
		}
	}
	if !p.IsOutput() || p.Level() != gpio.Low {
		t.Fatalf("output %v level %v", p.IsOutput(), p.Level())
	}
	if err := p.Drive(gpio.High); err == nil {
		t.Fatal("driving an output was allowed")
	}
}

func TestEdges(t *testing.T) {
	tests := []struct {
		name  string
		start gpio.Level
		edge  gpio.Edge
		drive []gpio.Level
		want  bool
	}{
		{"both edges see a rise", gpio.Low, gpio.BothEdges, []gpio.Level{gpio.High}, true},
		{"both edges see a fall", gpio.High, gpio.BothEdges, []gpio.Level{gpio.Low}, true},
		{"rising ignores a fall", gpio.High, gpio.RisingEdge, []gpio.Level{gpio.Low}, false},
		{"rising sees a rise", gpio.Low, gpio.RisingEdge, []gpio.Level{gpio.High}, true},
		{"falling ignores a rise", gpio.Low, gpio.FallingEdge, []gpio.Level{gpio.High}, false},
		{"falling sees a fall", gpio.High, gpio.FallingEdge, []gpio.Level{gpio.Low}, true},
		{"no edge detection", gpio.Low, gpio.NoEdge, []gpio.Level{gpio.High, gpio.Low}, false},
		{"same level is no edge", gpio.Low, gpio.BothEdges, []gpio.Level{gpio.Low}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New().Get("in")
			_ = p.In(gpio.Float, gpio.NoEdge)
			_ = p.Drive(tt.start)
			if err := p.In(gpio.PullNoChange, tt.edge); err != nil {
				t.Fatal(err)
			}
			for _, l := range tt.drive {
				if err := p.Drive(l); err != nil {
					t.Fatal(err)
				}
			}
			if got := p.WaitForEdge(10 * time.Millisecond); got != tt.want {
				t.Fatalf("WaitForEdge = %v, want %v", got, tt.want)
			}
			if p.WaitForEdge(0) {
				t.Fatal("an edge was reported twice")
			}
		})
	}
}

func TestInDropsPendingEdgesAndPullSetsLevel(t *testing.T) {
	p := New().Get("in")
	_ = p.In(gpio.PullDown, gpio.BothEdges)
	_ = p.Drive(gpio.High)
	_ = p.In(gpio.PullNoChange, gpio.BothEdges)
	if p.WaitForEdge(0) {
		t.Fatal("In kept an edge from before")
	}
	q := New().Get("btn")
	_ = q.Out(gpio.Low)
	_ = q.In(gpio.PullUp, gpio.NoEdge)
	if q.Read() != gpio.High || q.Pull() != gpio.PullUp {
		t.Fatalf("a pulled-up input reads %v with pull %v", q.Read(), q.Pull())
	}
	_ = q.Drive(gpio.Low) // a button to ground, pressed
	_ = q.In(gpio.PullUp, gpio.BothEdges)
	if q.Read() != gpio.Low {
		t.Fatal("a pull-up overrode the level the test drives")
	}
}

func TestHaltWakesWaitForEdge(t *testing.T) {
	p := New().Get("in")
	_ = p.In(gpio.Float, gpio.BothEdges)
	done := make(chan bool)
	go func() { done <- p.WaitForEdge(-1) }()
	time.Sleep(10 * time.Millisecond)
	_ = p.Halt()
	select {
	case got := <-done:
		if got {
			t.Fatal("a halted wait reported an edge")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Halt did not wake WaitForEdge")
	}
}

func TestIsAPinIO(t *testing.T) {
	var _ gpio.PinIO = New().Get("x")
	p := New().Get("x")
	if err := p.PWM(gpio.DutyHalf, 0); err == nil {
		t.Fatal("PWM should be refused")
	}
	if err := p.SetFunc(gpio.OUT); err != nil || !p.IsOutput() {
		t.Fatalf("SetFunc(OUT): %v, output %v", err, p.IsOutput())
	}
	if p.Func() != gpio.OUT {
		t.Fatalf("Func() = %v", p.Func())
	}
}
