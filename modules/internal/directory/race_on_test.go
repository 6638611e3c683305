//go:build race

package directory

// raceDetector is set in -race builds, which run several times slower:
// wall-clock bounds that are the behaviour of a normal build do not hold.
const raceDetector = true
