package records

import (
	"strings"
	"testing"
)

// TestStringsAtEveryWordOffset puts quotes, escapes, multi-byte and invalid
// UTF-8 and control characters at every offset of the eight-byte words the
// string scanner reads, in strings of every length around a word or two,
// and at the very end of the input, and checks each value against
// encoding/json.
func TestStringsAtEveryWordOffset(t *testing.T) {
	specials := []string{`\"`, `\\`, `\n`, `\u00e9`, `\ud83d\ude00`, "é", "東", "😀", "\xff", "\xe2\x82"}
	d := Decoder{TimeField: "createdDateTime"}
	var p Page
	for n := range 20 {
		for at := 0; at <= n; at++ {
			for _, sp := range specials {
				s := strings.Repeat("a", at) + sp + strings.Repeat("b", n-at)
				for _, tail := range []string{`,"z":1}`, `}`} {
					obj := `{"id":"x","createdDateTime":"2024-01-01T00:00:00Z","s":"` + s + `"` + tail
					if err := d.DecodePage([]byte(`{"value":[`+obj+`]}`), &p); err != nil {
						t.Fatalf("%q: %v", s, err)
					}
					evs, err := DecodeEvents(p.Buf)
					if err != nil || len(evs) != 1 {
						t.Fatalf("%q: %v", s, err)
					}
					want := jsonSemantics(t, []byte(obj)).(map[string]any)["s"]
					if got := evs[0].Fields["s"]; got != want {
						t.Fatalf("%q: got %q, want %q", s, got, want)
					}
				}
			}
		}
	}
	// A control character is refused wherever it is: its record is skipped.
	for at := range 17 {
		body := `{"value":[{"s":"` + strings.Repeat("a", at) + "\x01" + `"}]}`
		if err := d.DecodePage([]byte(body), &p); err != nil || p.Invalid != 1 || !strings.Contains(p.FirstInvalid, "control character") {
			t.Fatalf("control character at %d: %v %q", at, err, p.FirstInvalid)
		}
	}
	// A string that runs to the end of the input is truncated input.
	for n := range 17 {
		body := `{"value":[{"s":"` + strings.Repeat("a", n)
		if err := d.DecodePage([]byte(body), &p); err == nil {
			t.Fatalf("unterminated string of %d bytes accepted", n)
		}
	}
}
