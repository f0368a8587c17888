package fleet

import (
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	for _, tt := range []struct {
		name     string
		base     time.Duration
		failures int
		want     time.Duration
	}{
		{"the first failure waits the base", 30 * time.Second, 1, 30 * time.Second},
		{"the second twice as long", 30 * time.Second, 2, time.Minute},
		{"the sixth 32 times as long", 30 * time.Second, 6, 16 * time.Minute},
		{"the seventh is capped", 30 * time.Second, 7, 30 * time.Minute},
		{"many failures stay capped", 30 * time.Second, 1000, 30 * time.Minute},
		{"a long base doubles up to the cap", 10 * time.Minute, 3, 30 * time.Minute},
		{"a base above the cap is capped", time.Hour, 1, 30 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryDelay(tt.base, tt.failures); got != tt.want {
				t.Errorf("retryDelay(%v, %d) = %v, want %v", tt.base, tt.failures, got, tt.want)
			}
		})
	}
}

func TestRetryBase(t *testing.T) {
	for _, tt := range []struct {
		name string
		sync time.Duration
		want time.Duration
	}{
		{"the default sync interval is below the minimum", 0, 30 * time.Second},
		{"a longer sync interval is the base", 2 * time.Minute, 2 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(Config{SyncInterval: tt.sync}).retryBase(); got != tt.want {
				t.Errorf("base %v, want %v", got, tt.want)
			}
		})
	}
}
