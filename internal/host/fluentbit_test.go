package host_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/in-msgraph/in_msgraph/internal/host"
)

// The Fluent Bit releases as the plugin sees them.
var (
	fb41      = host.FluentBit{PerInstance: true, Append: true, Since403: true} // 4.1 and later
	fb403     = host.FluentBit{Append: true, Since403: true}                    // 4.0.3 to 4.0.x
	fbOld     = host.FluentBit{Append: true}                                    // 2.1 to 4.0.2
	fbUnknown = host.FluentBit{}                                                // before 4.1, no symbols exported
	// 4.1 and later built without exported symbols: the per-instance
	// callbacks tell the release.
	fb41Bare = host.FluentBit{PerInstance: true}
)

func TestFluentBitReleases(t *testing.T) {
	for _, tt := range []struct {
		name string
		fb   host.FluentBit
		new  bool
	}{
		{"4.1+", fb41, true},
		{"4.1+ without symbols", fb41Bare, true},
		{"4.0.3-4.0.x", fb403, true},
		{"2.1-4.0.2", fbOld, false},
		{"unknown", fbUnknown, false},
	} {
		if got := tt.fb.StopsOnFailedInit(); got != tt.new {
			t.Errorf("%s: StopsOnFailedInit = %v", tt.name, got)
		}
		if got := tt.fb.FlushesAtStop(); got != tt.new {
			t.Errorf("%s: FlushesAtStop = %v", tt.name, got)
		}
	}
}

// TestStartedWarnsOnce: a Fluent Bit that drops queued records at a stop,
// or that may, is warned of once per process; 4.0.3 and later are not.
func TestStartedWarnsOnce(t *testing.T) {
	h := host.New()
	if got := h.Started(fb41); len(got) != 0 {
		t.Errorf("4.1: %q", got)
	}
	if got := h.Started(fb403); len(got) != 0 {
		t.Errorf("4.0.3: %q", got)
	}
	if got := h.Started(fbOld); !slices.Equal(got, []string{host.WarnNoFlush}) {
		t.Errorf("2.1-4.0.2: %q", got)
	}
	if got := h.Started(fbOld); len(got) != 0 {
		t.Errorf("2.1-4.0.2, again (a hot reload): %q", got)
	}
	if got := h.Started(fbUnknown); !slices.Equal(got, []string{host.WarnNoAppend, host.WarnMayNotFlush}) {
		t.Errorf("unknown: %q", got)
	}
	if got := h.Started(fb41Bare); !slices.Equal(got, nil) {
		t.Errorf("4.1 without symbols, after the unknown one: %q", got)
	}
	for _, w := range []string{host.WarnNoFlush, host.WarnMayNotFlush} {
		for _, s := range []string{"storage.type filesystem", "4.0.3 or later", "committed"} {
			if !strings.Contains(w, s) {
				t.Errorf("%q lacks %q", w, s)
			}
		}
	}
}

// TestFailedInit: 4.0.3 and later stop by themselves, so the plugin only
// logs the error; an older (or unknown) one would run on without the
// input, so the plugin stops every instance it runs and ends the process,
// saying so through Fluent Bit's logger and on stderr.
func TestFailedInit(t *testing.T) {
	for _, tt := range []struct {
		name string
		fb   host.FluentBit
		exit bool
		why  string
	}{
		{"4.0.3", fb403, false, ""},
		{"2.1-4.0.2", fbOld, true, "Fluent Bit older than 4.0.3 runs on without it"},
		{"unknown", fbUnknown, true, "cannot tell its release"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.init(r.props("a.db"), false, 1)
			_, err := r.h.Init(r.props("b.db"), host.Caller{Thread: 2, Name: "msgraph.1"})
			if !errors.Is(err, host.ErrLegacyMulti) {
				t.Fatalf("second legacy Init: %v", err)
			}
			f := r.h.Failed(tt.fb, host.Caller{Thread: 2, Name: "msgraph.1"}, err)
			if len(f.Lines) == 0 || f.Lines[0] != "[input:msgraph] "+err.Error() {
				t.Errorf("lines %q: the first is not the error", f.Lines)
			}
			if f.Exit != tt.exit {
				t.Fatalf("Exit = %v", f.Exit)
			}
			if !tt.exit {
				if len(f.Lines) != 1 || r.h.Len() != 1 {
					t.Errorf("lines %q, %d instances: Fluent Bit stops them itself", f.Lines, r.h.Len())
				}
				return
			}
			if f.Status != 255 || f.Wait <= 0 {
				t.Errorf("status %d, wait %v", f.Status, f.Wait)
			}
			if len(f.Lines) != 2 || !strings.Contains(f.Lines[1], tt.why) || !strings.Contains(f.Lines[1], "[input:msgraph:msgraph.1]") || !strings.Contains(f.Lines[1], "exit status 255") {
				t.Errorf("lines %q", f.Lines)
			}
			if !strings.Contains(f.Stderr, err.Error()) || !strings.Contains(f.Stderr, "exit status 255") || !strings.HasSuffix(f.Stderr, "\n") {
				t.Errorf("stderr %q", f.Stderr)
			}
			// The running instance was stopped and its state file closed:
			// it opens again.
			if r.h.Len() != 0 {
				t.Errorf("%d instances left running", r.h.Len())
			}
			r.init(r.props("a.db"), false, 3)
		})
	}
}
