package webapi

import "net/http"

// Mount serves the paths owns accepts with h and every other with other:
// how one address serves several functions.
func Mount(owns func(path string) bool, h, other http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if owns(r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		other.ServeHTTP(w, r)
	})
}

// Dispatch serves r with mux when one of its routes matches. Otherwise it
// calls miss with what the mux would have answered, 404 or 405 (with the
// methods allowed on the path), so that the caller answers in its own error
// envelope rather than the mux's plain text; anything else the mux answers
// (a redirect to a cleaned path) passes through as it is.
func Dispatch(mux *http.ServeMux, w http.ResponseWriter, r *http.Request, miss func(status int, allow string)) {
	if _, pattern := mux.Handler(r); pattern != "" {
		mux.ServeHTTP(w, r)
		return
	}
	p := &probe{header: http.Header{}}
	mux.ServeHTTP(p, r)
	switch p.code {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		miss(p.code, p.header.Get("Allow"))
	default:
		for k, v := range p.header {
			w.Header()[k] = v
		}
		w.WriteHeader(p.code)
		_, _ = w.Write(p.body)
	}
}

// probe keeps what the mux answers for a request no route matches.
type probe struct {
	header http.Header
	code   int
	body   []byte
}

func (p *probe) Header() http.Header { return p.header }

func (p *probe) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}

func (p *probe) Write(b []byte) (int, error) {
	if p.code == 0 {
		p.code = http.StatusOK
	}
	p.body = append(p.body, b...)
	return len(b), nil
}
