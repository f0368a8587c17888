package fakellm_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

func TestPull(t *testing.T) {
	s := start(t)
	u, _ := url.Parse(s.URL())
	client := api.NewClient(u, http.DefaultClient)
	ctx := context.Background()

	t.Run("streamed progress ends with success", func(t *testing.T) {
		var statuses []string
		var last int64
		err := client.Pull(ctx, &api.PullRequest{Model: "phi4:14b"}, func(p api.ProgressResponse) error {
			statuses = append(statuses, p.Status)
			if p.Completed < last && p.Total > 0 {
				t.Errorf("progress went back: %+v", p)
			}
			if p.Total > 0 {
				last = p.Completed
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(statuses) < 4 || statuses[0] != "pulling manifest" || statuses[len(statuses)-1] != "success" || last == 0 {
			t.Errorf("statuses %q", statuses)
		}
	})
	t.Run("the pulled model is listed", func(t *testing.T) {
		tags, err := client.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(tags.Models, func(m api.ListModelResponse) bool { return m.Name == "phi4:14b" }) {
			t.Errorf("models %+v", tags.Models)
		}
	})
	t.Run("without streaming", func(t *testing.T) {
		stream := false
		var statuses []string
		err := client.Pull(ctx, &api.PullRequest{Model: "gemma3", Stream: &stream}, func(p api.ProgressResponse) error {
			statuses = append(statuses, p.Status)
			return nil
		})
		if err != nil || !slices.Equal(statuses, []string{"success"}) {
			t.Errorf("statuses %q, error %v", statuses, err)
		}
	})
}

func TestPullScripted(t *testing.T) {
	// The Ollama client reports neither a cut stream nor a canceled one as
	// an error (the provider checks for the final "success" itself), so
	// what the client saw is judged by the steps it got.
	for _, tt := range []struct {
		name       string
		reply      fakellm.Reply
		cancel     bool // cancel the pull once its first step arrived
		wantErr    bool
		wantSteps  int // steps the client saw
		wantListed bool
	}{
		{name: "a scripted status fails before any step", reply: fakellm.Reply{Match: "phi4", Status: 500, Text: "disk full"}, wantErr: true},
		{name: "a cut stream leaves the model unlisted", reply: fakellm.Reply{Match: "phi4", CutAfter: 2}, wantSteps: 2},
		{name: "a canceled pull leaves the model unlisted", reply: fakellm.Reply{Match: "phi4", Latency: time.Minute}, cancel: true, wantSteps: 1},
		{name: "a reply for another model does not apply", reply: fakellm.Reply{Match: "gemma", Status: 500}, wantSteps: 8, wantListed: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t)
			s.Script(tt.reply)
			u, _ := url.Parse(s.URL())
			client := api.NewClient(u, http.DefaultClient)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var statuses []string
			err := client.Pull(ctx, &api.PullRequest{Model: "phi4:14b"}, func(p api.ProgressResponse) error {
				statuses = append(statuses, p.Status)
				if tt.cancel {
					cancel()
				}
				return nil
			})
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if len(statuses) != tt.wantSteps || (tt.wantListed != slices.Contains(statuses, "success")) {
				t.Errorf("client saw %q, want %d steps", statuses, tt.wantSteps)
			}
			tags, err := client.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := slices.ContainsFunc(tags.Models, func(m api.ListModelResponse) bool { return m.Name == "phi4:14b" })
			if got != tt.wantListed {
				t.Errorf("model listed = %v, want %v", got, tt.wantListed)
			}
		})
	}
}

func TestUnknownPathsAreRecorded(t *testing.T) {
	s := start(t)
	req, _ := http.NewRequest(http.MethodDelete, s.URL()+"/api/delete", strings.NewReader(`{"model":"llama3.2:1b"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d, want 404", resp.StatusCode)
	}
	got := s.Requests()
	if len(got) != 1 || got[0].Method != http.MethodDelete || got[0].Path != "/api/delete" {
		t.Errorf("recorded %+v", got)
	}
	if _, b := get(t, s, "/api/tags"); !strings.Contains(string(b), "llama3.2:1b") {
		t.Errorf("the model is gone after an unserved delete: %s", b)
	}
}
