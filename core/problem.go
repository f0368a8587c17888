package core

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong (or, as a warning, questionable) in a chain,
// located by the task it is in and the field path from the chain's root.
type Problem struct {
	// TaskID is the id of the task the problem is in, if any.
	TaskID string `json:"task_id,omitempty"`
	// Path is the field path, e.g. "tasks[1].execute_config.temperature".
	Path string `json:"path"`
	// Message says what is wrong and, where it can, how to fix it.
	Message string `json:"message"`
}

// String formats the problem on one line.
func (p Problem) String() string {
	var sb strings.Builder
	if p.TaskID != "" {
		fmt.Fprintf(&sb, "task %q: ", p.TaskID)
	}
	if p.Path != "" {
		sb.WriteString(p.Path)
		sb.WriteString(": ")
	}
	sb.WriteString(p.Message)
	return sb.String()
}

// ValidationError lists every problem found in a chain. It is always
// wrapped in an *Error with code EINVALID.
type ValidationError struct {
	Problems []Problem
}

// Error joins the problems on one line.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return strings.Join(parts, "; ")
}

// invalidChain wraps problems into an EINVALID *Error, or returns nil.
func invalidChain(problems []Problem) error {
	if len(problems) == 0 {
		return nil
	}
	return &Error{Code: EINVALID, Message: "invalid chain", Err: &ValidationError{Problems: problems}}
}

// Closest returns the candidate nearest to name by edit distance when it
// is near enough to be a plausible typo, else a candidate that name begins
// ("purpose" for "purposeType"), else "". Case and underscores do not
// count, so "input_type" is close to "inputType".
func Closest(name string, candidates []string) string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	best, bestDist := "", -1
	for _, c := range candidates {
		d := editDistance(norm(name), norm(c))
		if bestDist < 0 || d < bestDist || (d == bestDist && c < best) {
			best, bestDist = c, d
		}
	}
	limit := len(name) / 3
	if limit < 2 {
		limit = 2
	}
	if bestDist >= 0 && bestDist <= limit {
		return best
	}
	if len(name) >= 3 {
		for _, c := range candidates {
			if strings.HasPrefix(norm(c), norm(name)) {
				return c
			}
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
