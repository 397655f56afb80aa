//go:build race

package dedup

// raceEnabled shrinks the size checks: the race detector makes a million
// inserts take seconds, and the bytes per id do not depend on it.
const raceEnabled = true
