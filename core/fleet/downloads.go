package fleet

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/llm"
)

// TaskModelDownload is the task type of every Job.
const TaskModelDownload = "model_download"

// jobValidity is how long a queued job may wait for its turn once it is
// due. A job that expires is dropped; the next cycle queues it again if the
// model is still missing, so an expired job costs nothing but a delay.
const jobValidity = time.Hour

// Job is a queued model download.
type Job struct {
	// ID is the backend's URL and the model, joined by "/": one job per
	// model and backend.
	ID string `json:"id"`
	// TaskType is TaskModelDownload.
	TaskType string `json:"taskType"`
	// ModelJob says what to pull where.
	ModelJob ModelJob `json:"modelJob"`
	// ScheduledFor is when the job may start: when it was queued, or, for
	// the retry of a failed pull, when its backoff ends.
	ScheduledFor time.Time `json:"scheduledFor"`
	// ValidUntil is when the job is dropped if it has not started.
	ValidUntil time.Time `json:"validUntil"`
	CreatedAt  time.Time `json:"createdAt"`
}

// newJob returns the job pulling model onto the backend at url, queued at
// now to start at due.
func newJob(url, model string, due, now time.Time) Job {
	return Job{
		ID:           url + "/" + model,
		TaskType:     TaskModelDownload,
		ModelJob:     ModelJob{URL: url, Model: model},
		ScheduledFor: due,
		ValidUntil:   due.Add(jobValidity),
		CreatedAt:    now,
	}
}

// ModelJob is the model a Job pulls and the URL of the backend it pulls
// it onto.
type ModelJob struct {
	URL   string `json:"url"`
	Model string `json:"model"`
}

// Progress is one step of a running download.
type Progress struct {
	// Status is the backend's description of the step ("pulling
	// manifest", "success", ...).
	Status string `json:"status"`
	// Digest, Total and Completed describe the layer being downloaded.
	Digest    string `json:"digest"`
	Total     int64  `json:"total"`
	Completed int64  `json:"completed"`
	// Model and BaseURL say which download this is.
	Model   string `json:"model"`
	BaseURL string `json:"baseUrl"`
}

// subscriberBuffer is how many progress events a subscriber may fall
// behind before it misses some.
const subscriberBuffer = 64

// downloads is the download queue and the pulls running from it, one per
// backend URL at a time. Backend URLs are compared as the catalog stores
// them (without a trailing "/"), model names by llm.ModelKey.
//
// A pull that fails is queued again to start after a backoff: the sync
// interval or 30 s, whichever is longer, doubled after each failure in a
// row up to 30 min. A success, or the model no longer missing, starts the
// count afresh.
//
// A download the user stopped (Cancel, RemoveQueued) is held: no cycle
// queues it again while the same backend, by ID, keeps the model assigned
// through its groups. The hold ends once a cycle sees that this is no
// longer so: the model is unassigned from the backend, the backend is taken
// out of its groups, deleted, or registered again (a new ID); from that
// cycle on, assigning the model queues it as usual. Holds are kept in
// memory only, so a restart forgets them. Assignments are compared as the
// cycles see them: unassigning and assigning again between two cycles is
// no change.
type downloads struct {
	mu      sync.Mutex
	queue   []Job
	workers map[string]*worker // by URL: the goroutine pulling onto that backend
	retries pairs[retry]       // the models whose last pull failed
	holds   pairs[string]      // the stopped downloads: the ID of their backend
	subs    map[chan Progress]struct{}
}

// worker is the state of the goroutine pulling onto one backend.
type worker struct {
	job    *Job // the running job, nil between jobs
	cancel context.CancelFunc
	last   *Progress // the running job's last progress step
}

func newDownloads() downloads {
	return downloads{
		workers: make(map[string]*worker),
		retries: make(pairs[retry]),
		holds:   make(pairs[string]),
		subs:    make(map[chan Progress]struct{}),
	}
}

// want queues a job for each model in missing that the backend at url has
// no job for and that is not held: due now, or at the end of its backoff
// after a failed pull. It forgets the failures of the models no longer
// missing there and drops their queued jobs, which would pull for nothing.
func (d *downloads) want(url string, missing []string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropExpired(now)
	needed := make(map[string]bool, len(missing))
	for _, model := range missing {
		needed[llm.ModelKey(model)] = true
	}
	for model := range d.retries[url] {
		if !needed[model] {
			d.retries.del(url, model)
		}
	}
	d.queue = slices.DeleteFunc(d.queue, func(j Job) bool {
		return j.ModelJob.URL == url && !needed[llm.ModelKey(j.ModelJob.Model)]
	})
	for _, model := range missing {
		key := llm.ModelKey(model)
		if _, held := d.holds.get(url, key); held || d.has(url, key) {
			continue
		}
		due := now
		if r, ok := d.retries.get(url, key); ok && r.next.After(now) {
			due = r.next
		}
		d.queue = append(d.queue, newJob(url, model, due, now))
	}
}

// has reports whether model (a model key) is queued or being pulled onto
// the backend at url. d.mu must be held.
func (d *downloads) has(url, model string) bool {
	if w := d.workers[url]; w != nil && w.job != nil && llm.ModelKey(w.job.ModelJob.Model) == model {
		return true
	}
	return slices.ContainsFunc(d.queue, func(j Job) bool {
		return j.ModelJob.URL == url && llm.ModelKey(j.ModelJob.Model) == model
	})
}

// dropExpired removes the queued jobs whose time is up. d.mu must be held.
func (d *downloads) dropExpired(now time.Time) {
	d.queue = slices.DeleteFunc(d.queue, func(j Job) bool { return !now.Before(j.ValidUntil) })
}

// idle returns the URLs of the backends to start a goroutine running
// Fleet.work for: those with queued jobs and no worker. Two cycles may
// find a URL idle before the goroutine of the first claims it, so only one
// of the goroutines of a URL becomes its worker (see claim).
func (d *downloads) idle() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, j := range d.queue {
		url := j.ModelJob.URL
		if _, busy := d.workers[url]; !busy && !slices.Contains(out, url) {
			out = append(out, url)
		}
	}
	return out
}

// claim registers the caller as the worker of the backend at url unless it
// has one, and reports whether it did.
func (d *downloads) claim(url string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, busy := d.workers[url]; busy {
		return false
	}
	d.workers[url] = &worker{}
	return true
}

// take starts the next due job for the backend at url, returning it and
// the context its pull runs on (canceled by Cancel). When there is none,
// or ctx has ended, the worker is unregistered and ok is false; a job
// waiting out its backoff is started by the worker of a later cycle.
func (d *downloads) take(ctx context.Context, url string, now time.Time) (job Job, jctx context.Context, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropExpired(now)
	i := slices.IndexFunc(d.queue, func(j Job) bool {
		return j.ModelJob.URL == url && !j.ScheduledFor.After(now)
	})
	if i < 0 || ctx.Err() != nil {
		delete(d.workers, url)
		return Job{}, nil, false
	}
	job = d.queue[i]
	d.queue = slices.Delete(d.queue, i, i+1)
	w := d.workers[url]
	jctx, w.cancel = context.WithCancel(ctx)
	w.job, w.last = &job, nil
	return job, jctx, true
}

// progress records p as the last step of the running pull at url and
// passes it to every subscriber that has room for it.
func (d *downloads) progress(url string, p Progress) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w := d.workers[url]; w != nil && w.job != nil {
		w.last = &p
	}
	for ch := range d.subs {
		select {
		case ch <- p:
		default: // a slow reader misses this step; the pull never waits
		}
	}
}

// done ends the running job at url with the pull's outcome, at now. A
// success clears the model's failures and its hold, if a Cancel came too
// late to stop it. A failure of a pull that was neither canceled nor held
// meanwhile counts one more in a row and queues the job again for when its
// backoff ends (base doubled per failure, see retryDelay); done then
// returns the model's retry state and true, for the log.
func (d *downloads) done(url string, job Job, err error, canceled bool, now time.Time, base time.Duration) (retry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.workers[url]
	w.cancel()
	w.job, w.cancel, w.last = nil, nil, nil
	model := llm.ModelKey(job.ModelJob.Model)
	if err == nil {
		d.retries.del(url, model)
		d.holds.del(url, model)
		return retry{}, false
	}
	if _, held := d.holds.get(url, model); held || canceled {
		return retry{}, false
	}
	r, _ := d.retries.get(url, model)
	r.failures++
	r.next = now.Add(retryDelay(base, r.failures))
	r.err = fmt.Sprintf("pull %s: %v", job.ModelJob.Model, err)
	d.retries.set(url, model, r)
	d.queue = append(d.queue, newJob(job.ModelJob.URL, job.ModelJob.Model, r.next, now))
	return r, true
}

// assignment is what the groups of the Ollama backend at a URL assign it.
type assignment struct {
	id     string          // the backend's ID
	models map[string]bool // by model key
}

// held names a download that was held.
type held struct{ url, model string }

// release ends the holds that no longer stand, given what is assigned to
// the current Ollama backends, by URL: those at a URL with no backend or
// another backend than the one held for, and those of a model the backend
// is no longer assigned. It returns the holds it ended, sorted.
func (d *downloads) release(current map[string]assignment) []held {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []held
	for url, models := range d.holds {
		a := current[url]
		for model, heldID := range models {
			if heldID != a.id || !a.models[model] {
				out = append(out, held{url, model})
			}
		}
	}
	for _, h := range out {
		d.holds.del(h.url, h.model)
	}
	slices.SortFunc(out, func(x, y held) int { return cmp.Or(strings.Compare(x.url, y.url), strings.Compare(x.model, y.model)) })
	return out
}

// status returns the last progress of the pull running at url (nil when
// none) and the failures of the last pulls there, sorted.
func (d *downloads) status(url string) (*Progress, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var last *Progress
	if w := d.workers[url]; w != nil && w.last != nil {
		p := *w.last
		last = &p
	}
	var errs []string
	for _, r := range d.retries[url] {
		errs = append(errs, r.String())
	}
	slices.Sort(errs)
	return last, errs
}

// ollamaAt returns the ID of the Ollama backend now at url, "" when there
// is none.
func (f *Fleet) ollamaAt(url string) string {
	if b := f.cur.Load(); b != nil {
		for _, m := range b.members {
			if m.backend.Type == catalog.TypeOllama && m.backend.BaseURL == url {
				return m.backend.ID
			}
		}
	}
	return ""
}

// hold keeps the download of model onto the backend at url off the queue
// while the backend now there keeps the model assigned, and forgets its
// failures: the user stopped it, so its backoff is moot. f.dl.mu must be
// held.
func (f *Fleet) hold(url, model string) {
	f.dl.holds.set(url, llm.ModelKey(model), f.ollamaAt(url))
	f.dl.retries.del(url, llm.ModelKey(model))
}

// Queue returns the downloads waiting for their turn, oldest first,
// including the retries of failed pulls, whose ScheduledFor is the end of
// their backoff. A running download is no longer queued; its progress goes
// to Subscribe.
func (f *Fleet) Queue() []Job {
	f.dl.mu.Lock()
	defer f.dl.mu.Unlock()
	f.dl.dropExpired(f.cfg.Now())
	return slices.Clone(f.dl.queue)
}

// RemoveQueued drops the queued downloads of model (on any backend),
// retries waiting out their backoff included, and returns how many there
// were. A running download is not affected; see Cancel.
//
// The sync cycles do not queue a removed download again while its backend
// keeps the model assigned. To download it after all, unassign the model
// from the backend (or take the backend out of its groups, or register the
// backend again) and, once a cycle has run, assign it again; a restart
// forgets removals too.
func (f *Fleet) RemoveQueued(model string) int {
	f.dl.mu.Lock()
	defer f.dl.mu.Unlock()
	key := llm.ModelKey(model)
	for _, j := range f.dl.queue {
		if llm.ModelKey(j.ModelJob.Model) == key {
			f.hold(j.ModelJob.URL, j.ModelJob.Model)
		}
	}
	n := len(f.dl.queue)
	f.dl.queue = slices.DeleteFunc(f.dl.queue, func(j Job) bool { return llm.ModelKey(j.ModelJob.Model) == key })
	return n - len(f.dl.queue)
}

// Cancel stops the running downloads onto the backend at url and of model
// and returns how many it stopped; "" matches any URL or model, so
// Cancel("", "") stops them all. url may end in "/", as the catalog accepts
// it. A canceled download is not an error. Queued downloads are not
// affected; see RemoveQueued.
//
// The sync cycles do not queue a canceled download again while its backend
// keeps the model assigned. To download it after all, unassign the model
// from the backend (or take the backend out of its groups, or register the
// backend again) and, once a cycle has run, assign it again; a restart
// forgets cancellations too.
func (f *Fleet) Cancel(url, model string) int {
	// The catalog stores URLs without the trailing "/" a caller may give.
	url = strings.TrimRight(url, "/")
	f.dl.mu.Lock()
	defer f.dl.mu.Unlock()
	n := 0
	for at, w := range f.dl.workers {
		if w.job == nil || (url != "" && url != at) ||
			(model != "" && llm.ModelKey(model) != llm.ModelKey(w.job.ModelJob.Model)) {
			continue
		}
		w.cancel()
		f.hold(at, w.job.ModelJob.Model)
		n++
	}
	return n
}

// Subscribe returns a channel receiving the progress of every download
// until ctx ends, when it is closed. A reader that falls behind misses
// steps rather than slowing a download.
func (f *Fleet) Subscribe(ctx context.Context) <-chan Progress {
	ch := make(chan Progress, subscriberBuffer)
	f.dl.mu.Lock()
	f.dl.subs[ch] = struct{}{}
	f.dl.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.dl.mu.Lock()
		defer f.dl.mu.Unlock()
		delete(f.dl.subs, ch)
		close(ch)
	}()
	return ch
}

// work runs the due jobs of the backend at url one after the other, unless
// the backend has a worker already, until none is left or ctx ends. A model
// that was pulled is listed again at once, so that it is routable and shown
// without waiting for the next cycle. A failed pull is logged once per
// attempt, which the backoff spaces out.
func (f *Fleet) work(ctx context.Context, url string) {
	if !f.dl.claim(url) {
		return
	}
	for {
		job, jctx, ok := f.dl.take(ctx, url, f.cfg.Now())
		if !ok {
			return
		}
		id, err := f.pull(jctx, url, job)
		r, retried := f.dl.done(url, job, err, jctx.Err() != nil, f.cfg.Now(), f.retryBase())
		switch {
		case retried:
			f.cfg.Logger.Warn("fleet: pull failed", "backend", id, "url", job.ModelJob.URL, "model", job.ModelJob.Model,
				"attempt", r.failures, "nextTry", r.next, "err", err)
		case err != nil:
			f.cfg.Logger.Info("fleet: pull canceled", "url", job.ModelJob.URL, "model", job.ModelJob.Model)
		case id != "":
			f.cfg.Logger.Info("fleet: pulled", "url", job.ModelJob.URL, "model", job.ModelJob.Model)
			if err := f.cur.Load().router.RefreshBackend(ctx, id); err != nil {
				f.cfg.Logger.Warn("fleet: listing after a pull", "url", job.ModelJob.URL, "err", err)
			}
		}
	}
}

// pull runs one job on the backend now at url and returns that backend's
// ID; "" and no error when no backend that can pull is there any more.
func (f *Fleet) pull(ctx context.Context, url string, job Job) (string, error) {
	var (
		id     string
		puller llm.Puller
	)
	for _, m := range f.cur.Load().members {
		if p, ok := m.provider.(llm.Puller); ok && m.backend.BaseURL == url {
			id, puller = m.backend.ID, p
			break
		}
	}
	if puller == nil {
		return "", nil
	}
	f.cfg.Logger.Info("fleet: pulling", "url", job.ModelJob.URL, "model", job.ModelJob.Model)
	err := puller.Pull(ctx, job.ModelJob.Model, func(p llm.PullProgress) {
		f.dl.progress(url, Progress{
			Status: p.Status, Digest: p.Digest, Total: p.Total, Completed: p.Completed,
			Model: job.ModelJob.Model, BaseURL: job.ModelJob.URL,
		})
	})
	return id, err
}
