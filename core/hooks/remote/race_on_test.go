//go:build race

package remote_test

// raceEnabled: the race detector makes importing the large documents about
// seven times slower; `make test` imports them in a run without it.
const raceEnabled = true
