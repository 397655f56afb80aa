package graphsim

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// Seeds is the seeds a volume test runs: MSGRAPH_VOLUME_SEED alone (so
// that several processes can run the seeds of a long test side by side),
// or MSGRAPH_VOLUME_SEEDS of them when set, else n, which each test sizes
// so that make test stays within CI's time.
func Seeds(t testing.TB, n int) []uint64 {
	t.Helper()
	if s := os.Getenv("MSGRAPH_VOLUME_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil || seed < 1 {
			t.Fatalf("MSGRAPH_VOLUME_SEED=%q: a seed from 1 on", s)
		}
		return []uint64{seed}
	}
	if s := os.Getenv("MSGRAPH_VOLUME_SEEDS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("MSGRAPH_VOLUME_SEEDS=%q: a whole number of seeds", s)
		}
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}

// LogWriter writes what it is given to the test's log, a line at a time:
// a logging.Logger's output in a test.
type LogWriter struct{ T testing.TB }

func (w LogWriter) Write(p []byte) (int, error) {
	w.T.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
