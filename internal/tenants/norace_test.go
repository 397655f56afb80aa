//go:build !race

package tenants

const raceEnabled = false
