package ollama

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ollama/ollama/api"
)

// maxLine bounds one NDJSON line of a streamed answer, as the official
// client does; the buffer grows to it only when a line needs it.
const maxLine = 8 << 20

// errCut marks a body that broke off after the server had answered 200.
var errCut = errors.New("the body broke off")

// errLineTooLong reports a streamed line over maxLine.
var errLineTooLong = errors.New("a streamed line is over 8 MiB")

// stream posts body to path and calls fn with each NDJSON line of the
// answer. It stands in for api.Client's streaming, which allocates an
// 8 MiB scan buffer on every call (about 0.6 ms and 8 MB of garbage per
// request, measured in BenchmarkPromptOverHTTP) and returns nil when the
// connection breaks mid-answer. Requests and responses keep the api
// package's types, and errors its StatusError, so the rest of the provider
// does not know the difference.
func (p *Provider) stream(ctx context.Context, path string, body any, fn func([]byte) error) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= http.StatusBadRequest {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return api.StatusError{StatusCode: resp.StatusCode, Status: resp.Status, ErrorMessage: errorText(msg)}
	}
	r := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := readLine(r)
		if len(line) > 0 {
			if bytes.Contains(line, []byte(`"error"`)) {
				var e struct {
					Error string `json:"error"`
				}
				if json.Unmarshal(line, &e) == nil && e.Error != "" {
					return fmt.Errorf("the server reported an error mid-stream: %s", e.Error)
				}
			}
			if ferr := fn(line); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, errLineTooLong) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errCut, err)
		}
	}
}

// readLine returns the next non-empty line without its newline, growing
// past the reader's buffer only as far as maxLine.
func readLine(r *bufio.Reader) ([]byte, error) {
	var long []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(long)+len(bytes.TrimRight(chunk, "\r\n")) > maxLine {
			return nil, errLineTooLong
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		var line []byte
		if long != nil {
			line = append(long, chunk...)
		} else {
			// ReadSlice's result is overwritten by the next read.
			line = bytes.Clone(chunk)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 && err == nil {
			continue
		}
		return line, err
	}
}

// errorText is the message of an Ollama error body ({"error": "..."}) or
// the body itself.
func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(body))
}
