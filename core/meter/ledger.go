package meter

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// MaxSummaryDays bounds the days one Summarize reads.
const MaxSummaryDays = 92

// create writes u once, and reports whether this call wrote it: a second
// write of the same id (a retry) finds it there and changes nothing.
func (m *Meter) create(ctx context.Context, tenant string, u Usage) (bool, error) {
	body, err := json.Marshal(u)
	if err != nil {
		return false, core.WrapError(core.EINTERNAL, err, "encode usage %s", u.ID)
	}
	err = m.records.CreateRecord(ctx, tenant, &core.Record{Kind: KindUsage, ID: u.ID, Body: body, CreatedAt: u.At, UpdatedAt: u.At})
	if core.ErrorCode(err) == core.ECONFLICT {
		return false, nil
	}
	return err == nil, err
}

// Query selects ledger records for Summarize.
type Query struct {
	// From and To are the first and last day (UTC) summed.
	From, To time.Time
	// Key and Model, when set, keep only the records of that key or model.
	Key, Model string
}

// Group is the sum of the ledger records of one day, key and model.
type Group struct {
	Day   string `json:"day"`
	Key   string `json:"key,omitempty"`
	Model string `json:"model,omitempty"`
	// Requests counts the API's requests; Steps the steps of executions
	// that used a model. The tokens and the cost are both's.
	Requests        int    `json:"requests"`
	Steps           int    `json:"steps"`
	TokensIn        int    `json:"tokensIn"`
	TokensOut       int    `json:"tokensOut"`
	CachedTokens    int    `json:"cachedTokens"`
	ReasoningTokens int    `json:"reasoningTokens"`
	CostMicros      Micros `json:"costMicros"`
	CostUSD         string `json:"costUsd"`
}

// Summary is a Summarize answer: the total and its groups.
type Summary struct {
	From   string  `json:"from"`
	To     string  `json:"to"`
	Total  Group   `json:"total"`
	Groups []Group `json:"groups"`
}

// Summarize sums tenant's ledger records by day, key and model.
func (m *Meter) Summarize(ctx context.Context, tenant string, q Query) (Summary, error) {
	from, to := day(q.From), day(q.To)
	if to.Before(from) {
		return Summary{}, core.Errorf(core.EINVALID, "to: %s is before from %s", to.Format(time.DateOnly), from.Format(time.DateOnly))
	}
	if to.Sub(from) > MaxSummaryDays*24*time.Hour {
		return Summary{}, core.Errorf(core.EINVALID, "to: at most %d days from from", MaxSummaryDays)
	}
	out := Summary{From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), Groups: []Group{}}
	groups := map[[3]string]*Group{}
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		prefix := d.Format(time.DateOnly) + "/"
		for cursor := ""; ; {
			page, err := m.records.ListRecords(ctx, tenant, KindUsage, core.ListQuery{Prefix: prefix, Cursor: cursor, Limit: core.MaxPageSize})
			if err != nil {
				return Summary{}, err
			}
			for _, r := range page.Records {
				var u Usage
				if err := json.Unmarshal(r.Body, &u); err != nil {
					return Summary{}, core.WrapError(core.EINTERNAL, err, "decode usage %s", r.ID)
				}
				if (q.Key != "" && u.Key != q.Key) || (q.Model != "" && u.Model != q.Model) {
					continue
				}
				k := [3]string{prefix[:len(prefix)-1], u.Key, u.Model}
				g := groups[k]
				if g == nil {
					g = &Group{Day: k[0], Key: k[1], Model: k[2]}
					groups[k] = g
				}
				g.add(u)
				out.Total.add(u)
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
	}
	for _, g := range groups {
		g.CostUSD = g.CostMicros.String()
		out.Groups = append(out.Groups, *g)
	}
	slices.SortFunc(out.Groups, func(a, b Group) int {
		for _, c := range [][2]string{{a.Day, b.Day}, {a.Key, b.Key}, {a.Model, b.Model}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	out.Total.CostUSD = out.Total.CostMicros.String()
	return out, nil
}

func (g *Group) add(u Usage) {
	if u.Kind == KindStepUsage {
		g.Steps++
	} else {
		g.Requests++
	}
	g.TokensIn += u.TokensIn
	g.TokensOut += u.TokensOut
	g.CachedTokens += u.CachedTokens
	g.ReasoningTokens += u.ReasoningTokens
	g.CostMicros += u.CostMicros
}

// day is t's day, at midnight UTC.
func day(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
