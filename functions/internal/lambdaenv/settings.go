package lambdaenv

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/seal"
)

// The environment variables of the AWS functions, the only configuration
// they have (docs/aws.md has them in one table).
const (
	VarTable           = "STEPWISE_TABLE"
	VarQueueURL        = "STEPWISE_QUEUE_URL"
	VarBucket          = "STEPWISE_BUCKET"
	VarSecretKey       = "STEPWISE_SECRET_KEY"
	VarSecretKeyARN    = "STEPWISE_SECRET_KEY_ARN"
	VarEventBus        = "STEPWISE_EVENT_BUS"
	VarOllamaURL       = "OLLAMA_BACKEND_URL"
	VarRoutingPolicy   = "STEPWISE_ROUTING_POLICY"
	VarSyncTimeout     = "STEPWISE_SYNC_TIMEOUT"
	VarDeliveryMargin  = "STEPWISE_DELIVERY_MARGIN"
	VarLeaseTTL        = "STEPWISE_LEASE_TTL"
	VarLogLevel        = "STEPWISE_LOG_LEVEL"
	VarEndpointURL     = "AWS_ENDPOINT_URL"
	VarAuth            = "STEPWISE_AUTH"
	defaultSyncTimeout = 25 * time.Second
)

// apiGatewayLimit is API Gateway's integration timeout: an answer that
// takes longer never reaches the client, so the sync timeout stays below.
const apiGatewayLimit = 30 * time.Second

// Settings are the parsed environment.
type Settings struct {
	// Table is the DynamoDB table (STEPWISE_TABLE).
	Table string
	// QueueURL is the SQS work queue (STEPWISE_QUEUE_URL).
	QueueURL string
	// Bucket is the S3 bucket for step outputs too large for a DynamoDB
	// item (STEPWISE_BUCKET); "" keeps them refused with a clear error.
	Bucket string
	// SecretKey seals provider keys (STEPWISE_SECRET_KEY, or after Load
	// the key read from the secret SecretKeyARN names); nil when neither
	// is set, and then storing a provider key fails with a clear error.
	SecretKey []byte
	// SecretKeyARN is the ARN or name of the Secrets Manager secret whose
	// SecretString is the key (STEPWISE_SECRET_KEY_ARN), read by Load at
	// cold start, so that the key is not in the function's configuration.
	SecretKeyARN string
	// EventBus is the EventBridge bus (name or ARN) on which executions'
	// lifecycle events are published (STEPWISE_EVENT_BUS); "" publishes
	// none.
	EventBus string
	// Defaults are the default models (EMBED_, TASK_, CHAT_MODEL with
	// their _PROVIDER and _MODEL_CONTEXT_LENGTH).
	Defaults catalog.Defaults
	// OllamaURL is the Ollama backend registered at start
	// (OLLAMA_BACKEND_URL); "" registers none.
	OllamaURL string
	// Policy is the default routing policy (STEPWISE_ROUTING_POLICY).
	Policy string
	// SyncTimeout bounds a synchronous /tasks or /execute before it
	// answers 202 (STEPWISE_SYNC_TIMEOUT, under API Gateway's 30 s).
	SyncTimeout time.Duration
	// LeaseTTL is how long a delivery's claim on an execution lasts
	// without a commit or a heartbeat renewing it (STEPWISE_LEASE_TTL,
	// default core.DefaultLeaseTTL): after a worker dies, its execution
	// runs again when the lease ends, found by the next scheduled sweep.
	LeaseTTL time.Duration
	// Margin is kept before the invocation's deadline to commit and send
	// the continuation (STEPWISE_DELIVERY_MARGIN).
	Margin time.Duration
	// LogLevel is the level of the JSON log on stderr (STEPWISE_LOG_LEVEL).
	LogLevel slog.Level
	// Endpoint replaces the AWS endpoints (AWS_ENDPOINT_URL: LocalStack,
	// the emulator in tests); "" means AWS.
	Endpoint string
	// Auth requires API keys (STEPWISE_AUTH=on); a table that has keys
	// always requires them.
	Auth bool
}

// ParseSettings reads and checks the environment through getenv. Every
// error names its variable and never repeats the secret key.
func ParseSettings(getenv func(string) string) (Settings, error) {
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	s := Settings{
		Table:        get(VarTable),
		QueueURL:     get(VarQueueURL),
		Bucket:       get(VarBucket),
		SecretKeyARN: get(VarSecretKeyARN),
		EventBus:     get(VarEventBus),
		OllamaURL:    get(VarOllamaURL),
		Policy:       get(VarRoutingPolicy),
		Endpoint:     get(VarEndpointURL),
	}
	switch a := get(VarAuth); a {
	case "on":
		s.Auth = true
	case "", "off":
	default:
		return s, invalid(VarAuth, "%q: want on or off", a)
	}
	if s.Table == "" {
		return s, invalid(VarTable, "required: the DynamoDB table's name")
	}
	if s.QueueURL == "" {
		return s, invalid(VarQueueURL, "required: the SQS work queue's URL")
	}
	for name, v := range map[string]string{VarQueueURL: s.QueueURL, VarOllamaURL: s.OllamaURL, VarEndpointURL: s.Endpoint} {
		if v != "" && !httpURL(v) {
			return s, invalid(name, "%q is not an http(s) URL", v)
		}
	}
	k := get(VarSecretKey)
	if k != "" && s.SecretKeyARN != "" {
		return s, invalid(VarSecretKeyARN, "set it or %s, not both: the key comes from one place", VarSecretKey)
	}
	if k != "" {
		key, err := seal.ParseKey(k)
		if err != nil {
			return s, core.WrapError(core.EINVALID, err, "%s", VarSecretKey)
		}
		s.SecretKey = key
	}
	if s.EventBus != "" && !eventBusOK(s.EventBus) {
		return s, invalid(VarEventBus, "%q: want an EventBridge bus name or ARN", s.EventBus)
	}
	if s.Policy == "" {
		s.Policy = core.PolicyOrdered
	}
	if err := core.CheckRoutingPolicy(VarRoutingPolicy, s.Policy); err != nil {
		return s, err
	}
	var err error
	if s.SyncTimeout, err = duration(get, VarSyncTimeout, defaultSyncTimeout); err != nil {
		return s, err
	}
	if s.SyncTimeout >= apiGatewayLimit {
		return s, invalid(VarSyncTimeout, "%s: must stay under API Gateway's %s limit, or the 202 never reaches the client", s.SyncTimeout, apiGatewayLimit)
	}
	if s.Margin, err = duration(get, VarDeliveryMargin, core.DefaultDeadlineMargin); err != nil {
		return s, err
	}
	if s.LeaseTTL, err = duration(get, VarLeaseTTL, core.DefaultLeaseTTL); err != nil {
		return s, err
	}
	if s.LeaseTTL < time.Second {
		// A running step renews its lease every third of it, in a write.
		return s, invalid(VarLeaseTTL, "%s: at least 1s", s.LeaseTTL)
	}
	if lvl := get(VarLogLevel); lvl != "" {
		if err := s.LogLevel.UnmarshalText([]byte(strings.ToUpper(lvl))); err != nil {
			return s, invalid(VarLogLevel, "%q: want debug, info, warn or error", lvl)
		}
	}
	if s.Defaults, err = catalog.ParseDefaults(get); err != nil {
		return s, err
	}
	return s, nil
}

// duration reads a positive Go duration ("25s"), or def when unset.
func duration(get func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, invalid(name, "%q: want a positive duration such as 25s", v)
	}
	return d, nil
}

// eventBusOK reports whether v is what EventBridge takes as a bus: a name
// of letters, digits and "._-/" (at most 256), or the ARN of one.
func eventBusOK(v string) bool {
	if arn, ok := strings.CutPrefix(v, "arn:"); ok {
		_, name, ok := strings.Cut(arn, ":event-bus/")
		return ok && strings.Contains(arn, ":events:") && eventBusOK(name)
	}
	if v == "" || len(v) > 256 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/", r)) {
			return false
		}
	}
	return true
}

func httpURL(v string) bool {
	u, err := url.Parse(v)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// invalid is an EINVALID error whose message starts with the variable.
func invalid(name, format string, args ...any) error {
	return core.Errorf(core.EINVALID, "%s: %s", name, fmt.Sprintf(format, args...))
}
