//go:build race

package dedup

// raceEnabled skips the size checks under the race detector: it makes a
// million inserts take seconds, and the bytes per id do not depend on it.
// make test runs them in its second pass, without -race (NORACE).
const raceEnabled = true
