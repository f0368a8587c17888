package catalog_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/seal"
)

const (
	openAIKey = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789WXYZ"
	geminiKey = "AIzaSyD-1234567890abcdefghijklmnopqrs"
)

func TestConfigureProvider(t *testing.T) {
	tests := []struct {
		typ, key, baseURL, mask string
	}{
		{catalog.ProviderOpenAI, openAIKey, "https://api.openai.com/v1", "…WXYZ"},
		{catalog.ProviderGemini, "  " + geminiKey + "\n", "https://generativelanguage.googleapis.com/v1beta/openai", "…pqrs"},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			st, err := f.cat.ConfigureProvider(ctx, tenant, tt.typ, tt.key, false)
			must(t, err)
			if want := (catalog.ProviderStatus{Configured: true, UpdatedAt: st.UpdatedAt, Provider: tt.typ}); st != want || st.UpdatedAt.IsZero() {
				t.Errorf("status %+v, want %+v with a time", st, want)
			}
			b, err := f.cat.GetBackend(ctx, tenant, tt.typ)
			must(t, err)
			if b.ID != tt.typ || b.Name != tt.typ || b.Type != tt.typ || b.BaseURL != tt.baseURL {
				t.Errorf("provider backend %+v, want id=name=type=%s at %s", b, tt.typ, tt.baseURL)
			}
			pc, err := f.cat.GetProviderConfig(ctx, tenant, tt.typ)
			must(t, err)
			if want := (catalog.ProviderConfig{APIKey: tt.mask, Type: tt.typ}); pc != want {
				t.Errorf("GetProviderConfig = %+v, want %+v", pc, want)
			}
			got, err := f.cat.ProviderStatus(ctx, tenant, tt.typ)
			must(t, err)
			if got != st {
				t.Errorf("ProviderStatus = %+v, want %+v", got, st)
			}
			s, err := f.cat.Snapshot(ctx, tenant)
			must(t, err)
			if want := map[string]string{tt.typ: strings.TrimSpace(tt.key)}; !reflect.DeepEqual(s.Keys, want) {
				t.Errorf("snapshot keys hold %d entries, want the configured key", len(s.Keys))
			}
		})
	}
}

func TestProviderKeyIsSealed(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	_, err := f.cat.ConfigureProvider(ctx, tenant, catalog.ProviderOpenAI, openAIKey, false)
	must(t, err)
	r, err := f.store.GetRecord(ctx, tenant, catalog.KindProvider, catalog.ProviderOpenAI)
	must(t, err)
	for _, form := range []string{openAIKey, base64.StdEncoding.EncodeToString([]byte(openAIKey)), strings.TrimSuffix(openAIKey, "WXYZ")} {
		if bytes.Contains(r.Body, []byte(form)) {
			t.Fatalf("stored provider record contains the key (as %q)", form)
		}
	}
	var body struct {
		SealedKey string `json:"sealedKey"`
	}
	must(t, json.Unmarshal(r.Body, &body))
	sealed, err := base64.StdEncoding.DecodeString(body.SealedKey)
	must(t, err)
	if bytes.Contains(sealed, []byte(openAIKey)) {
		t.Fatal("sealed bytes contain the key")
	}
	if _, err := f.box.Open(sealed, []byte(tenant+"/provider/gemini")); err == nil {
		t.Error("the sealed key opens for another provider's record")
	}
	plain, err := f.box.Open(sealed, []byte(tenant+"/provider/openai"))
	must(t, err)
	if string(plain) != openAIKey {
		t.Error("the sealed key does not open to the configured key")
	}
}

func TestConfigureProviderErrors(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, f *fixture)
		noSealer bool
		typ, key string
		upsert   bool
		wantCode string
		wantMsg  string
	}{
		{name: "UnknownType", typ: "anthropic", key: openAIKey, wantCode: core.ENOTFOUND, wantMsg: `unknown provider "anthropic"`},
		{name: "OllamaTakesNoKey", typ: catalog.TypeOllama, key: openAIKey, wantCode: core.ENOTFOUND, wantMsg: "unknown provider"},
		{name: "KeyRequired", typ: catalog.ProviderOpenAI, key: "", wantCode: core.EINVALID, wantMsg: "apiKey: required"},
		{name: "KeyBlank", typ: catalog.ProviderOpenAI, key: " \n", wantCode: core.EINVALID, wantMsg: "apiKey: required"},
		{name: "NoSealer", noSealer: true, typ: catalog.ProviderOpenAI, key: openAIKey, wantCode: core.EINTERNAL, wantMsg: "no sealer"},
		{name: "ExistsNoUpsert", typ: catalog.ProviderOpenAI, key: openAIKey + "2", wantCode: core.EINVALID,
			wantMsg: `provider "openai" is already configured`,
			setup: func(t *testing.T, f *fixture) {
				_, err := f.cat.ConfigureProvider(context.Background(), tenant, catalog.ProviderOpenAI, openAIKey, false)
				must(t, err)
			}},
		{name: "BackendNameTaken", typ: catalog.ProviderOpenAI, key: openAIKey, upsert: true, wantCode: core.ECONFLICT,
			wantMsg: `name: a backend named "openai" exists`,
			setup:   func(t *testing.T, f *fixture) { mustBackend(t, f.cat, "openai", "http://proxy") }},
		{name: "BackendURLTaken", typ: catalog.ProviderOpenAI, key: openAIKey, wantCode: core.ECONFLICT,
			wantMsg: `baseUrl: a backend with URL "https://api.openai.com/v1" exists`,
			setup:   func(t *testing.T, f *fixture) { mustBackend(t, f.cat, "mine", "https://api.openai.com/v1/") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{noSealer: tt.noSealer})
			if tt.setup != nil {
				tt.setup(t, f)
			}
			before := rawRecords(t, f.store, catalog.KindProvider)
			st, err := f.cat.ConfigureProvider(ctx, tenant, tt.typ, tt.key, tt.upsert)
			wantErr(t, err, tt.wantCode, tt.wantMsg)
			if st != (catalog.ProviderStatus{}) {
				t.Errorf("status %+v returned with an error", st)
			}
			if strings.Contains(err.Error(), openAIKey) || (strings.TrimSpace(tt.key) != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.key))) {
				t.Errorf("error %q contains the key", err)
			}
			if after := rawRecords(t, f.store, catalog.KindProvider); !reflect.DeepEqual(after, before) {
				t.Errorf("a failed configure changed the provider records")
			}
		})
	}
}

func TestConfigureProviderUpsert(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	first, err := f.cat.ConfigureProvider(ctx, tenant, catalog.ProviderOpenAI, "sk-old-key-000000", false)
	must(t, err)
	b, err := f.cat.GetBackend(ctx, tenant, catalog.ProviderOpenAI)
	must(t, err)
	// The backend holds the key: it cannot be pointed elsewhere, nor
	// deleted on its own.
	_, err = f.cat.UpdateBackend(ctx, tenant, b.ID, catalog.Backend{Name: "openai", BaseURL: "http://elsewhere", Type: "openai"})
	wantErr(t, err, core.EFORBIDDEN, "managed by /providers/openai")
	wantErr(t, f.cat.DeleteBackend(ctx, tenant, b.ID), core.EFORBIDDEN, "DELETE /providers/openai/config")
	renamed, err := f.cat.UpdateBackend(ctx, tenant, b.ID, catalog.Backend{Name: "openai-prod", BaseURL: b.BaseURL, Type: "openai"})
	must(t, err)
	if renamed.Name != "openai-prod" {
		t.Errorf("renamed = %+v", renamed)
	}
	g := mustGroup(t, f.cat, "cloud", "Chat")
	must(t, f.cat.AssignBackend(ctx, tenant, g.ID, b.ID))

	second, err := f.cat.ConfigureProvider(ctx, tenant, catalog.ProviderOpenAI, openAIKey, true)
	must(t, err)
	if !second.Configured || !second.UpdatedAt.After(first.UpdatedAt) {
		t.Errorf("statuses %+v then %+v: want a later update", first, second)
	}
	after, err := f.cat.GetBackend(ctx, tenant, catalog.ProviderOpenAI)
	must(t, err)
	if after.BaseURL != catalog.OpenAIBaseURL || !after.CreatedAt.Equal(b.CreatedAt) {
		t.Errorf("backend after upsert %+v: want the OpenAI URL and the first creation time", after)
	}
	pc, err := f.cat.GetProviderConfig(ctx, tenant, catalog.ProviderOpenAI)
	must(t, err)
	if pc.APIKey != "…WXYZ" {
		t.Errorf("masked key %q after upsert, want the new key's", pc.APIKey)
	}
	s, err := f.cat.Snapshot(ctx, tenant)
	must(t, err)
	if s.Keys[catalog.ProviderOpenAI] != openAIKey {
		t.Error("snapshot does not hold the new key")
	}
	if !reflect.DeepEqual(s.BackendGroups[catalog.ProviderOpenAI], []string{g.ID}) {
		t.Errorf("upsert lost the backend's groups: %v", s.BackendGroups)
	}
}

func TestProviderKeyMask(t *testing.T) {
	tests := []struct {
		name, key, want string
	}{
		{"Short", "sk-12345678", "…"},
		{"Twelve", "sk-123456789", "…6789"},
		{"Long", openAIKey, "…WXYZ"},
		{"Unicode", "ключ-ключ-ключ", "…ключ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			_, err := f.cat.ConfigureProvider(ctx, tenant, catalog.ProviderGemini, tt.key, false)
			must(t, err)
			pc, err := f.cat.GetProviderConfig(ctx, tenant, catalog.ProviderGemini)
			must(t, err)
			if pc.APIKey != tt.want {
				t.Errorf("masked %q, want %q", pc.APIKey, tt.want)
			}
			list, _, err := f.cat.ListProviderConfigs(ctx, tenant, core.ListQuery{})
			must(t, err)
			if len(list) != 1 || list[0] != pc {
				t.Errorf("ListProviderConfigs = %+v, want [%+v]", list, pc)
			}
		})
	}
}

func TestProviderStatusAndReads(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	tests := []struct {
		name     string
		call     func() error
		wantCode string
		wantMsg  string
	}{
		{"StatusUnknownType", func() error {
			_, err := f.cat.ProviderStatus(ctx, tenant, "azure")
			return err
		}, core.ENOTFOUND, `unknown provider "azure"`},
		{"GetUnknownType", func() error {
			_, err := f.cat.GetProviderConfig(ctx, tenant, "azure")
			return err
		}, core.ENOTFOUND, `unknown provider "azure"`},
		{"GetNotConfigured", func() error {
			_, err := f.cat.GetProviderConfig(ctx, tenant, catalog.ProviderGemini)
			return err
		}, core.ENOTFOUND, `provider "gemini" is not configured`},
		{"DeleteUnknownType", func() error { return f.cat.DeleteProviderConfig(ctx, tenant, "azure") }, core.ENOTFOUND, `unknown provider "azure"`},
		{"DeleteNotConfigured", func() error { return f.cat.DeleteProviderConfig(ctx, tenant, catalog.ProviderGemini) }, core.ENOTFOUND,
			`provider "gemini" is not configured`},
		{"ListBadLimit", func() error {
			_, _, err := f.cat.ListProviderConfigs(ctx, tenant, core.ListQuery{Limit: -1})
			return err
		}, core.EINVALID, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.call(), tt.wantCode, tt.wantMsg)
		})
	}
	t.Run("StatusNotConfigured", func(t *testing.T) {
		st, err := f.cat.ProviderStatus(ctx, tenant, catalog.ProviderOpenAI)
		must(t, err)
		if st != (catalog.ProviderStatus{Provider: catalog.ProviderOpenAI}) {
			t.Errorf("status %+v, want not configured", st)
		}
	})
	t.Run("ListPages", func(t *testing.T) {
		for _, p := range []string{catalog.ProviderOpenAI, catalog.ProviderGemini} {
			_, err := f.cat.ConfigureProvider(ctx, tenant, p, openAIKey, false)
			must(t, err)
		}
		first, next, err := f.cat.ListProviderConfigs(ctx, tenant, core.ListQuery{Limit: 1})
		must(t, err)
		second, last, err := f.cat.ListProviderConfigs(ctx, tenant, core.ListQuery{Limit: 1, Cursor: next})
		must(t, err)
		if len(first) != 1 || len(second) != 1 || first[0].Type != "gemini" || second[0].Type != "openai" || last != "" {
			t.Errorf("pages %+v then %+v (last %q), want gemini then openai", first, second, last)
		}
		for _, pc := range append(first, second...) {
			if pc.APIKey != "…WXYZ" {
				t.Errorf("listed key %q is not masked", pc.APIKey)
			}
		}
	})
}

func TestDeleteProviderConfig(t *testing.T) {
	tests := []struct {
		name string
		// backendGone: the provider's backend was deleted by hand first.
		backendGone bool
	}{
		{"WithBackend", false},
		{"BackendAlreadyGone", true}, // a crash between the two deletes
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			_, err := f.cat.ConfigureProvider(ctx, tenant, catalog.ProviderOpenAI, openAIKey, false)
			must(t, err)
			must(t, f.cat.EnsureBuiltinGroups(ctx, tenant))
			must(t, f.cat.AssignBackend(ctx, tenant, catalog.GroupChat, catalog.ProviderOpenAI))
			if tt.backendGone {
				must(t, f.store.DeleteRecord(ctx, tenant, catalog.KindBackend, catalog.ProviderOpenAI))
			}
			must(t, f.cat.DeleteProviderConfig(ctx, tenant, catalog.ProviderOpenAI))
			st, err := f.cat.ProviderStatus(ctx, tenant, catalog.ProviderOpenAI)
			must(t, err)
			if st.Configured {
				t.Error("still configured after delete")
			}
			_, err = f.cat.GetBackend(ctx, tenant, catalog.ProviderOpenAI)
			wantErr(t, err, core.ENOTFOUND, `backend "openai" not found`)
			if ids := rawIDs(t, f.store, catalog.KindBackendInGroup); len(ids) != 0 {
				t.Errorf("assignments outlived the provider's backend: %v", ids)
			}
			s, err := f.cat.Snapshot(ctx, tenant)
			must(t, err)
			if len(s.Keys) != 0 {
				t.Error("snapshot still holds a key")
			}
			wantErr(t, f.cat.DeleteProviderConfig(ctx, tenant, catalog.ProviderOpenAI), core.ENOTFOUND, "not configured")
		})
	}
}

func TestUnreadableRecords(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	b := mustBackend(t, f.cat, "b", "http://b")
	_, err := f.cat.ConfigureProvider(ctx, tenant, catalog.ProviderGemini, geminiKey, false)
	must(t, err)
	_, err = f.cat.ConfigureProvider(ctx, tenant, catalog.ProviderOpenAI, openAIKey, false)
	must(t, err)
	corrupt := func(kind, id string, body string) {
		r, err := f.store.GetRecord(ctx, tenant, kind, id)
		must(t, err)
		r.Body = []byte(body)
		must(t, f.store.RecordStore.UpdateRecord(ctx, tenant, r))
	}
	corrupt(catalog.KindProvider, catalog.ProviderGemini, `{"type":"gemini","sealedKey":"not base64!","maskedKey":"…"}`)
	t.Run("SnapshotSkipsBadKey", func(t *testing.T) {
		s, err := f.cat.Snapshot(ctx, tenant)
		must(t, err)
		if want := map[string]string{catalog.ProviderOpenAI: openAIKey}; !reflect.DeepEqual(s.Keys, want) {
			t.Errorf("snapshot holds keys for %d providers, want only openai's", len(s.Keys))
		}
	})
	corrupt(catalog.KindBackend, b.ID, `[not json`)
	t.Run("BackendBodyIsInternal", func(t *testing.T) {
		_, err := f.cat.GetBackend(ctx, tenant, b.ID)
		wantErr(t, err, core.EINTERNAL, `stored backend "`+b.ID+`" is not readable`)
		_, err = f.cat.Snapshot(ctx, tenant)
		wantErr(t, err, core.EINTERNAL, "not readable")
	})
}

func TestSnapshotKeysOnlyForProviderBackends(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	_, err := f.cat.ConfigureProvider(ctx, tenant, catalog.ProviderOpenAI, openAIKey, false)
	must(t, err)
	own, err := f.cat.CreateBackend(ctx, tenant, catalog.Backend{Name: "my-llamacpp", BaseURL: "http://127.0.0.1:8080/v1", Type: catalog.TypeOpenAI})
	must(t, err)

	snap, err := f.cat.Snapshot(ctx, tenant)
	must(t, err)
	if want := map[string]string{catalog.ProviderOpenAI: openAIKey}; !reflect.DeepEqual(snap.Keys, want) {
		t.Errorf("Keys has %d entries, want only the provider backend's", len(snap.Keys))
	}
	if _, leaked := snap.Keys[own.ID]; leaked {
		t.Error("a user's backend of type openai gets the OpenAI key")
	}

	t.Run("KeyThatDoesNotOpen", func(t *testing.T) {
		other, err := seal.New(seal.GenerateKey())
		must(t, err)
		cat := catalog.New(catalog.Config{Store: f.store, Sealer: other})
		snap, err := cat.Snapshot(ctx, tenant)
		must(t, err)
		if len(snap.Keys) != 0 || !strings.Contains(snap.KeyErrors[catalog.ProviderOpenAI], "does not open") {
			t.Errorf("Keys %d, KeyErrors %v: want no key and the reason", len(snap.Keys), snap.KeyErrors)
		}
	})
}

func TestProviderURLOverride(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	cat := catalog.New(catalog.Config{Store: f.store, Sealer: f.box, ProviderURLs: map[string]string{catalog.ProviderOpenAI: "http://gateway.internal/v1"}})
	_, err := cat.ConfigureProvider(ctx, tenant, catalog.ProviderOpenAI, openAIKey, false)
	must(t, err)
	b, err := cat.GetBackend(ctx, tenant, catalog.ProviderOpenAI)
	must(t, err)
	if b.BaseURL != "http://gateway.internal/v1" {
		t.Errorf("provider backend URL = %q, want the configured gateway", b.BaseURL)
	}
}

func TestProviderKeyFollowsOnlyItsBackend(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	_, err := f.cat.ConfigureProvider(ctx, tenant, catalog.ProviderOpenAI, openAIKey, false)
	must(t, err)

	// A user's name for the backend survives configuring the key again.
	b, err := f.cat.GetBackend(ctx, tenant, catalog.ProviderOpenAI)
	must(t, err)
	_, err = f.cat.UpdateBackend(ctx, tenant, b.ID, catalog.Backend{Name: "openai-prod", BaseURL: b.BaseURL, Type: b.Type})
	must(t, err)
	_, err = f.cat.ConfigureProvider(ctx, tenant, catalog.ProviderOpenAI, openAIKey, true)
	must(t, err)
	if b, _ = f.cat.GetBackend(ctx, tenant, catalog.ProviderOpenAI); b.Name != "openai-prod" {
		t.Errorf("re-configuring renamed the backend to %q", b.Name)
	}

	// The backend moved elsewhere behind the catalog's back (a racing
	// update, an edited database): the key is withheld, with the reason.
	r, err := f.store.GetRecord(ctx, tenant, catalog.KindBackend, catalog.ProviderOpenAI)
	must(t, err)
	r.Body = []byte(strings.Replace(string(r.Body), catalog.OpenAIBaseURL, "https://evil.example/v1", 1))
	must(t, f.store.UpdateRecord(ctx, tenant, r))
	snap, err := f.cat.Snapshot(ctx, tenant)
	must(t, err)
	if _, ok := snap.Keys[catalog.ProviderOpenAI]; ok {
		t.Fatal("the key went to a backend whose URL is not the provider's")
	}
	if !strings.Contains(snap.KeyErrors[catalog.ProviderOpenAI], "withheld") {
		t.Errorf("KeyErrors = %v, want the reason", snap.KeyErrors)
	}
}
