package fleet

import (
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
		ID:           urlKey(url) + "/" + model,
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
// backend URL at a time. Backend URLs are compared without a trailing "/",
// model names with their tag made explicit.
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
// out of its groups, deleted, or registered again (a new ID); from then
// on, assigning the model queues it as usual. Holds are kept in memory
// only, so a restart forgets them. Assignments are compared as the cycles
// see them: unassigning and assigning again between two cycles is no
// change.
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

// urlKey is the form backend URLs are compared in.
func urlKey(url string) string { return strings.TrimRight(url, "/") }

// want queues a job for each model in missing that the backend at url has
// no job for and that is not held: due now, or at the end of its backoff
// after a failed pull. It forgets the failures of the models no longer
// missing there and drops their queued jobs, which would pull for nothing.
func (d *downloads) want(url string, missing []string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropExpired(now)
	key := urlKey(url)
	needed := make(map[string]bool, len(missing))
	for _, model := range missing {
		needed[canonical(model)] = true
	}
	for model := range d.retries[key] {
		if !needed[model] {
			d.retries.del(key, model)
		}
	}
	d.queue = slices.DeleteFunc(d.queue, func(j Job) bool {
		return urlKey(j.ModelJob.URL) == key && !needed[canonical(j.ModelJob.Model)]
	})
	for _, model := range missing {
		c := canonical(model)
		if _, held := d.holds.get(key, c); held || d.has(key, c) {
			continue
		}
		due := now
		if r, ok := d.retries.get(key, c); ok && r.next.After(now) {
			due = r.next
		}
		d.queue = append(d.queue, newJob(url, model, due, now))
	}
}

// has reports whether model (canonical) is queued or being pulled onto the
// backend at url (a URL key). d.mu must be held.
func (d *downloads) has(url, model string) bool {
	if w := d.workers[url]; w != nil && w.job != nil && canonical(w.job.ModelJob.Model) == model {
		return true
	}
	return slices.ContainsFunc(d.queue, func(j Job) bool {
		return urlKey(j.ModelJob.URL) == url && canonical(j.ModelJob.Model) == model
	})
}

// dropExpired removes the queued jobs whose time is up. d.mu must be held.
func (d *downloads) dropExpired(now time.Time) {
	d.queue = slices.DeleteFunc(d.queue, func(j Job) bool { return !now.Before(j.ValidUntil) })
}

// idle returns the URLs (as keys) to start a goroutine running Fleet.work
// for: those with queued jobs and no worker, and those with holds. Holds
// are checked against the current backends at every cycle, so their URLs
// get a goroutine even while a worker pulls onto the backend; only one of
// the goroutines of a URL becomes its worker (see claim).
func (d *downloads) idle() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	seen := make(map[string]bool)
	for _, j := range d.queue {
		key := urlKey(j.ModelJob.URL)
		if _, busy := d.workers[key]; !busy && !seen[key] {
			seen[key] = true
			out = append(out, key)
		}
	}
	for key := range d.holds {
		if !seen[key] {
			seen[key] = true
			out = append(out, key)
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
		return urlKey(j.ModelJob.URL) == url && !j.ScheduledFor.After(now)
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
	model := canonical(job.ModelJob.Model)
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

// release ends the holds at url (a URL key) that no longer stand, given
// the ID of the backend now there ("" for none) and the models its groups
// assign it (canonical): those of another backend, or of a model it is no
// longer assigned. It returns the models released.
func (d *downloads) release(url, id string, assigned map[string]bool) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for model, heldID := range d.holds[url] {
		if heldID != id || !assigned[model] {
			d.holds.del(url, model)
			out = append(out, model)
		}
	}
	slices.Sort(out)
	return out
}

// status returns the last progress of the pull running at url (nil when
// none) and the failures of the last pulls there, sorted.
func (d *downloads) status(url string) (*Progress, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := urlKey(url)
	var last *Progress
	if w := d.workers[key]; w != nil && w.last != nil {
		p := *w.last
		last = &p
	}
	var errs []string
	for _, r := range d.retries[key] {
		errs = append(errs, r.String())
	}
	slices.Sort(errs)
	return last, errs
}

// declaration returns the ID of the Ollama backend now at url (a URL key)
// and the models its groups assign it, by canonical name; "" and nil when
// there is none.
func (f *Fleet) declaration(url string) (string, map[string]bool) {
	b := f.cur.Load()
	if b == nil {
		return "", nil
	}
	for _, m := range b.members {
		if m.backend.Type != catalog.TypeOllama || urlKey(m.backend.BaseURL) != url {
			continue
		}
		assigned := make(map[string]bool, len(m.models))
		for _, name := range m.models {
			assigned[canonical(name)] = true
		}
		return m.backend.ID, assigned
	}
	return "", nil
}

// hold keeps the download of model onto the backend at url (a URL key) off
// the queue while the backend now there keeps the model assigned, and
// forgets its failures: the user stopped it, so its backoff is moot.
// f.dl.mu must be held.
func (f *Fleet) hold(url, model string) {
	id, _ := f.declaration(url)
	f.dl.holds.set(url, canonical(model), id)
	f.dl.retries.del(url, canonical(model))
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
	for _, j := range f.dl.queue {
		if canonical(j.ModelJob.Model) == canonical(model) {
			f.hold(urlKey(j.ModelJob.URL), j.ModelJob.Model)
		}
	}
	n := len(f.dl.queue)
	f.dl.queue = slices.DeleteFunc(f.dl.queue, func(j Job) bool { return canonical(j.ModelJob.Model) == canonical(model) })
	return n - len(f.dl.queue)
}

// Cancel stops the running downloads onto the backend at url and of model
// and returns how many it stopped; "" matches any URL or model, so
// Cancel("", "") stops them all. A canceled download is not an error.
// Queued downloads are not affected; see RemoveQueued.
//
// The sync cycles do not queue a canceled download again while its backend
// keeps the model assigned. To download it after all, unassign the model
// from the backend (or take the backend out of its groups, or register the
// backend again) and, once a cycle has run, assign it again; a restart
// forgets cancellations too.
func (f *Fleet) Cancel(url, model string) int {
	f.dl.mu.Lock()
	defer f.dl.mu.Unlock()
	n := 0
	for key, w := range f.dl.workers {
		if w.job == nil || (url != "" && urlKey(url) != key) ||
			(model != "" && canonical(model) != canonical(w.job.ModelJob.Model)) {
			continue
		}
		w.cancel()
		f.hold(key, w.job.ModelJob.Model)
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

// work first ends the holds at url (a URL key) that the current backends
// no longer justify. Then, unless the backend has a worker already, it
// runs the due jobs of the backend one after the other until none is left
// or ctx ends. A model that was pulled is listed again at once, so that it
// is routable and shown without waiting for the next cycle. A failed pull
// is logged once per attempt, which the backoff spaces out.
func (f *Fleet) work(ctx context.Context, url string) {
	id, assigned := f.declaration(url)
	for _, model := range f.dl.release(url, id, assigned) {
		f.cfg.Logger.Info("fleet: download no longer held", "url", url, "model", model)
	}
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
		if p, ok := m.provider.(llm.Puller); ok && urlKey(m.backend.BaseURL) == url {
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
