package fleet

import (
	"context"
	"sync"
	"testing"
	"time"
)

// CycleForTest runs one iteration of Run's loop without its periodic
// reload: it loads the catalog if nothing is loaded yet, then runs a sync
// cycle, and returns a function that waits for the pulls it started. It
// lets the tests of package fleet_test step a fleet along their own clock
// rather than wait for Run's ticker. (Defined in a _test file, it is not
// part of the package's API.)
func (f *Fleet) CycleForTest(ctx context.Context) (wait func()) {
	var pulls sync.WaitGroup
	if f.cur.Load() == nil {
		f.reload(ctx)
	}
	f.sync(ctx, &pulls)
	return pulls.Wait
}

func TestReloadEvery(t *testing.T) {
	for _, tt := range []struct {
		name     string
		interval time.Duration
		want     int
	}{
		{"the default interval reloads every 6th tick", 10 * time.Second, 6},
		{"a short interval reloads about once a minute", 7 * time.Second, 8},
		{"a minute reloads every tick", time.Minute, 1},
		{"a longer interval reloads every tick", time.Hour, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := reloadEvery(tt.interval); got != tt.want {
				t.Errorf("reloadEvery(%v) = %d, want %d", tt.interval, got, tt.want)
			}
		})
	}
}
