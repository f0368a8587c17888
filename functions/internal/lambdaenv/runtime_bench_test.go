package lambdaenv_test

import (
	"runtime"
	"slices"
	"testing"
	"time"
)

// BenchmarkBootstrapFirstPoll measures each function's cold start as far
// as its own code goes: from the start of the bootstrap process to its
// first GET .../invocation/next. The api, worker and openai functions load
// their Env before polling (the catalog bootstrap and the fleet, on
// DynamoDB on the emulator), so they need moto_server; ingest only starts
// the runtime client. Each iteration is one cold start; first-poll-ms is
// their median, first-poll-max-ms the slowest.
//
//	go test -run '^$' -bench BootstrapFirstPoll -benchtime 15x ./functions/internal/lambdaenv/
func BenchmarkBootstrapFirstPoll(b *testing.B) {
	tests := []struct {
		fn string
		// loads tells whether the function loads its Env at init, and so
		// needs the deployment's table.
		loads bool
	}{
		{"api", true},
		{"worker", true},
		{"openai", true},
		{"ingest", false},
	}
	for _, tt := range tests {
		b.Run(tt.fn, func(b *testing.B) {
			bin := bootstraps.get(b, tt.fn, runtime.GOOS, runtime.GOARCH)
			var vars map[string]string
			if tt.loads {
				vars = deploy(b, nil).lambdaVars(nil)
			}
			var polls []time.Duration
			for b.Loop() {
				p := startBootstrap(b, bin, vars)
				polls = append(polls, p.firstPoll(b))
				p.stop()
			}
			slices.Sort(polls)
			b.ReportMetric(float64(polls[len(polls)/2])/float64(time.Millisecond), "first-poll-ms")
			b.ReportMetric(float64(polls[len(polls)-1])/float64(time.Millisecond), "first-poll-max-ms")
		})
	}
}
