package catalog

import "time"

// Record kinds.
const (
	KindChain          = "chain"
	KindBackend        = "backend"
	KindModel          = "model"
	KindGroup          = "group"
	KindBackendInGroup = "group_backend"
	KindModelInGroup   = "group_model"
	KindProvider       = "provider"
)

// Backend types.
const (
	TypeOllama = "ollama"
	TypeVLLM   = "vllm"
	TypeOpenAI = "openai"
	TypeGemini = "gemini"
)

// BackendTypes lists the backend types a backend may have.
func BackendTypes() []string { return []string{TypeOllama, TypeVLLM, TypeOpenAI, TypeGemini} }

// Backend is a model server stepwise may route requests to.
type Backend struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	BaseURL string `json:"baseUrl"`
	// Type is one of BackendTypes.
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Model is a declared model: what it may be used for and its context
// window. Its ID is its name, so every route addresses it the same way.
type Model struct {
	ID            string    `json:"id"`
	Model         string    `json:"model"`
	ContextLength int       `json:"contextLength"`
	CanChat       bool      `json:"canChat"`
	CanEmbed      bool      `json:"canEmbed"`
	CanPrompt     bool      `json:"canPrompt"`
	CanStream     bool      `json:"canStream"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
}

// Group is an affinity group: backends assigned to groups serve the
// models of those groups (see the package documentation).
type Group struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	PurposeType string    `json:"purposeType"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Built-in groups, created at start. Their ids equal their names.
const (
	GroupEmbed = "internal_embed_group"
	GroupTasks = "internal_tasks_group"
	GroupChat  = "internal_chat_group"
)

// Purpose types of the built-in groups.
const (
	PurposeEmbed = "Embedder"
	PurposeTasks = "Tasks"
	PurposeChat  = "Chat"
)

// ProviderStatus says whether a cloud provider has a key configured.
type ProviderStatus struct {
	Configured bool      `json:"configured"`
	UpdatedAt  time.Time `json:"updatedAt"`
	Provider   string    `json:"provider"`
}

// ProviderConfig is a cloud provider's configuration as the API shows it:
// the key is masked, never returned in full.
type ProviderConfig struct {
	// APIKey is the masked key ("…" and its last four characters).
	APIKey string `json:"APIKey"`
	Type   string `json:"Type"`
}

// Provider types that take a key through /providers.
const (
	ProviderOpenAI = TypeOpenAI
	ProviderGemini = TypeGemini
)

// DefaultModel is one of the default models configured at start (the
// seed's EMBED_*, TASK_* and CHAT_* variables).
type DefaultModel struct {
	Name          string
	Provider      string
	ContextLength int
}

// Defaults are the default models for embedding, prompts and chat.
type Defaults struct {
	Embed, Task, Chat DefaultModel
}

// Snapshot is everything routing needs, read at one moment.
type Snapshot struct {
	Backends []Backend
	Models   []Model
	Groups   []Group
	// BackendGroups maps a backend id to the ids of its groups.
	BackendGroups map[string][]string
	// GroupModels maps a group id to the names of its models.
	GroupModels map[string][]string
	// Keys maps the id of a backend that ConfigureProvider made (its id is
	// the provider type) to its API key, in clear. No other backend gets a
	// key: a user's backend of type openai must not receive OpenAI's key.
	Keys map[string]string
	// KeyErrors maps such a backend's id to why its stored key could not
	// be read.
	KeyErrors map[string]string
	// Defaults are the default models in use: each configured one, else
	// the first by name of the models assigned to its built-in group.
	Defaults Defaults
}
