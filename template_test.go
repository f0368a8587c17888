package stepwise_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// lambdaFunctions are the template's functions and the directories of
// their entry points (the Lambda contract of issue 5).
var lambdaFunctions = []struct{ id, dir string }{
	{"ApiFunction", "functions/api/lambda"},
	{"OpenAIFunction", "functions/openai/lambda"},
	{"IngestFunction", "functions/ingest/lambda"},
	{"WorkerFunction", "functions/worker/lambda"},
}

// lambdaEnv is every environment variable the entry points read; the
// template may set no other, and must set the required ones.
var lambdaEnv = []string{
	"STEPWISE_TABLE", "STEPWISE_QUEUE_URL", "STEPWISE_BUCKET", "STEPWISE_SECRET_KEY",
	"STEPWISE_SECRET_KEY_ARN", "STEPWISE_EVENT_BUS",
	"EMBED_MODEL", "EMBED_PROVIDER", "EMBED_MODEL_CONTEXT_LENGTH",
	"TASK_MODEL", "TASK_PROVIDER", "TASK_MODEL_CONTEXT_LENGTH",
	"CHAT_MODEL", "CHAT_PROVIDER", "CHAT_MODEL_CONTEXT_LENGTH",
	"OLLAMA_BACKEND_URL", "STEPWISE_ROUTING_POLICY", "STEPWISE_SYNC_TIMEOUT",
	"STEPWISE_DELIVERY_MARGIN", "STEPWISE_LOG_LEVEL", "AWS_ENDPOINT_URL", "STEPWISE_AUTH",
}

// TestTemplateLint runs cfn-lint, which checks template.yaml against the
// CloudFormation and SAM schemas after expanding the SAM transform. Like
// the AWS adapters' tests, it skips without the tool, except under CI=true.
func TestTemplateLint(t *testing.T) {
	bin := lookTool(t, "cfn-lint")
	out, err := exec.Command(bin, "template.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("cfn-lint template.yaml: %v\n%s", err, out)
	}
}

// TestTemplate checks what cfn-lint cannot know: that template.yaml agrees
// with the code it deploys.
func TestTemplate(t *testing.T) {
	tpl := loadTemplate(t, "template.yaml")

	t.Run("table is the one awsdynamo creates", func(t *testing.T) {
		// awsdynamo's names are unexported, so they are read from its
		// source: renaming a key there fails this test.
		c := awsdynamoConsts(t)
		pk, sk, gpk, gsk, gsi := c["attrPK"], c["attrSK"], c["attrGSI1PK"], c["attrGSI1SK"], c["indexGSI1"]
		table := resource(t, tpl, "Table", "AWS::DynamoDB::Table")
		key := func(hash, rng string) []any {
			return []any{
				map[string]any{"AttributeName": hash, "KeyType": "HASH"},
				map[string]any{"AttributeName": rng, "KeyType": "RANGE"},
			}
		}
		attrs := map[string]any{}
		for _, d := range asList(lookup(table, "AttributeDefinitions")) {
			attrs[fmt.Sprint(lookup(d, "AttributeName"))] = lookup(d, "AttributeType")
		}
		gsis := asList(lookup(table, "GlobalSecondaryIndexes"))
		if len(gsis) != 1 {
			t.Fatalf("GlobalSecondaryIndexes = %v, want one (%s)", gsis, gsi)
		}
		for _, tc := range []struct {
			name      string
			got, want any
		}{
			{"BillingMode", lookup(table, "BillingMode"), "PAY_PER_REQUEST"},
			{"KeySchema", lookup(table, "KeySchema"), key(pk, sk)},
			{"AttributeDefinitions", attrs, map[string]any{pk: "S", sk: "S", gpk: "S", gsk: "S"}},
			{"GSI IndexName", lookup(gsis[0], "IndexName"), gsi},
			{"GSI KeySchema", lookup(gsis[0], "KeySchema"), key(gpk, gsk)},
			{"GSI Projection", lookup(gsis[0], "Projection"), map[string]any{"ProjectionType": "ALL"}},
			{"PointInTimeRecovery", lookup(table, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"), true},
		} {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("Table %s = %#v, want %#v", tc.name, tc.got, tc.want)
			}
		}
		// The literals PAY_PER_REQUEST, ALL and S are what CreateTable
		// asks for through the SDK's enums.
		for _, enum := range []string{"BillingModePayPerRequest", "ProjectionTypeAll", "ScalarAttributeTypeS"} {
			if !createTableUses(t, enum) {
				t.Errorf("awsdynamo's CreateTable no longer uses types.%s: compare the template's table with it again", enum)
			}
		}
	})

	for _, fn := range lambdaFunctions {
		t.Run("function "+fn.id+" is built by the Makefile", func(t *testing.T) {
			resource(t, tpl, fn.id, "AWS::Serverless::Function")
			if got := lookup(tpl, "Resources", fn.id, "Metadata", "BuildMethod"); got != "makefile" {
				t.Errorf("Metadata.BuildMethod = %v, want makefile", got)
			}
			for prop, want := range map[string]any{
				"Runtime": "provided.al2023", "Handler": "bootstrap", "Architectures": []any{"arm64"},
			} {
				if got := functionProp(tpl, fn.id, prop); !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", prop, got, want)
				}
			}
			codeURI, ok := functionProp(tpl, fn.id, "CodeUri").(string)
			if !ok {
				t.Fatalf("CodeUri = %#v, want a directory", functionProp(tpl, fn.id, "CodeUri"))
			}
			if st, err := os.Stat(filepath.Join(codeURI, "Makefile")); err != nil || !st.Mode().IsRegular() {
				t.Fatalf("CodeUri %q holds no Makefile for BuildMethod makefile: %v", codeURI, err)
			}
			// sam build runs this target with ARTIFACTS_DIR set; make -n
			// prints the command it would run.
			out, err := exec.Command(lookTool(t, "make"), "-n", "--no-print-directory", "-C", codeURI,
				"build-"+fn.id, "ARTIFACTS_DIR=/artifacts").CombinedOutput()
			if err != nil {
				t.Fatalf("make -n build-%s: %v\n%s", fn.id, err, out)
			}
			for _, want := range []string{
				"GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0", " build ", "-tags lambda.norpc", "-trimpath",
				`-ldflags "-s -w"`, `-o "/artifacts/bootstrap"`, " ./" + fn.dir,
			} {
				if !strings.Contains(string(out), want) {
					t.Errorf("make build-%s runs %q, which lacks %q", fn.id, strings.TrimSpace(string(out)), want)
				}
			}
		})
	}

	t.Run("worker sweeps on a schedule", func(t *testing.T) {
		var schedules int
		for _, ev := range asMap(functionProp(tpl, "WorkerFunction", "Events")) {
			if t := lookup(ev, "Type"); t == "ScheduleV2" || t == "Schedule" {
				schedules++
			}
		}
		if schedules != 1 {
			t.Errorf("WorkerFunction has %d schedules, want 1: nothing would rescue an execution whose continuation was lost", schedules)
		}
	})
	t.Run("worker consumes the work queue", func(t *testing.T) {
		var sqs []any
		for _, ev := range asMap(functionProp(tpl, "WorkerFunction", "Events")) {
			if lookup(ev, "Type") == "SQS" {
				sqs = append(sqs, lookup(ev, "Properties"))
			}
		}
		if len(sqs) != 1 {
			t.Fatalf("WorkerFunction has %d SQS event sources, want 1", len(sqs))
		}
		src := sqs[0]
		if got, want := lookup(src, "Queue"), getAtt("WorkQueue", "Arn"); !reflect.DeepEqual(got, want) {
			t.Errorf("Queue = %#v, want %#v", got, want)
		}
		if got := asList(lookup(src, "FunctionResponseTypes")); !slices.Contains(got, any("ReportBatchItemFailures")) {
			t.Errorf("FunctionResponseTypes = %v: a failed message would fail its whole batch", got)
		}
		if n, ok := lookup(src, "BatchSize").(int); !ok || n < 1 || n > 5 {
			t.Errorf("BatchSize = %#v, want 1 to 5 (a crash fails the whole batch)", lookup(src, "BatchSize"))
		}
		if got := functionProp(tpl, "WorkerFunction", "RecursiveLoop"); got != "Allow" {
			t.Errorf("RecursiveLoop = %#v: Lambda would stop a long loop after about 16 continuations", got)
		}
		timeout, _ := functionProp(tpl, "WorkerFunction", "Timeout").(int)
		queue := resource(t, tpl, "WorkQueue", "AWS::SQS::Queue")
		if vis, _ := lookup(queue, "VisibilityTimeout").(int); timeout <= 0 || vis < 6*timeout {
			t.Errorf("WorkQueue VisibilityTimeout = %v, want at least 6 x the worker's Timeout %v", lookup(queue, "VisibilityTimeout"), timeout)
		}
		redrive := lookup(queue, "RedrivePolicy")
		if got := lookup(redrive, "maxReceiveCount"); got != 5 {
			t.Errorf("RedrivePolicy maxReceiveCount = %#v, want 5", got)
		}
		resource(t, tpl, "WorkDeadLetterQueue", "AWS::SQS::Queue")
		if got, want := lookup(redrive, "deadLetterTargetArn"), getAtt("WorkDeadLetterQueue", "Arn"); !reflect.DeepEqual(got, want) {
			t.Errorf("RedrivePolicy deadLetterTargetArn = %#v, want %#v", got, want)
		}
	})

	for _, fn := range lambdaFunctions {
		t.Run("function "+fn.id+" environment follows the contract", func(t *testing.T) {
			env := functionEnv(tpl, fn.id)
			for name := range env {
				if !slices.Contains(lambdaEnv, name) {
					t.Errorf("%s is not a variable the entry points read", name)
				}
			}
			for name, why := range map[string]string{
				"AWS_ENDPOINT_URL": "it is for LocalStack and would send the SDK away from AWS",
				// The key itself would be readable by anyone who may read
				// the function's configuration.
				"STEPWISE_SECRET_KEY": "the key would be readable in the function's configuration; set STEPWISE_SECRET_KEY_ARN",
			} {
				if v, ok := env[name]; ok {
					t.Errorf("%s = %#v: %s", name, v, why)
				}
			}
			if !slices.Contains([]string{"ApiFunction", "WorkerFunction"}, fn.id) {
				return
			}
			for name, want := range map[string]any{
				"STEPWISE_TABLE":          map[string]any{"Ref": "Table"},
				"STEPWISE_QUEUE_URL":      map[string]any{"Ref": "WorkQueue"},
				"STEPWISE_BUCKET":         map[string]any{"Ref": "BlobBucket"},
				"STEPWISE_EVENT_BUS":      map[string]any{"Ref": "EventBus"},
				"STEPWISE_SECRET_KEY_ARN": map[string]any{"Ref": "SecretKeySecretId"},
			} {
				if got := env[name]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", name, got, want)
				}
			}
		})
	}

	t.Run("no secret is resolved into the template", func(t *testing.T) {
		// A dynamic reference is resolved at deploy time into the
		// property, where the function's configuration shows it.
		walk(tpl, "", func(path, _ string, v any) {
			if s, ok := v.(string); ok && strings.Contains(s, "{{resolve:") {
				t.Errorf("%s = %q: read secrets at run time instead", path, s)
			}
		})
	})

	t.Run("the work queue receives every event", func(t *testing.T) {
		// Ingested events, functions' events and the lifecycle events all
		// have triggers to run.
		rule := resource(t, tpl, "EventsToWorkRule", "AWS::Events::Rule")
		want := map[string]any{"source": []any{map[string]any{"prefix": ""}}}
		if got := lookup(rule, "EventPattern"); !reflect.DeepEqual(got, want) {
			t.Errorf("EventPattern = %#v, want %#v", got, want)
		}
		if got := lookup(rule, "EventBusName"); !reflect.DeepEqual(got, map[string]any{"Ref": "EventBus"}) {
			t.Errorf("EventBusName = %#v, want the stack's bus", got)
		}
	})

	t.Run("OpenAI function URL streams", func(t *testing.T) {
		want := map[string]any{"AuthType": "AWS_IAM", "InvokeMode": "RESPONSE_STREAM"}
		if got := functionProp(tpl, "OpenAIFunction", "FunctionUrlConfig"); !reflect.DeepEqual(got, want) {
			t.Errorf("FunctionUrlConfig = %#v, want %#v", got, want)
		}
	})

	t.Run("outputs", func(t *testing.T) {
		for _, name := range []string{"ApiUrl", "OpenAIUrl", "TableName", "QueueUrl", "BucketName", "EventBusName"} {
			if lookup(tpl, "Outputs", name, "Value") == nil {
				t.Errorf("output %s is missing", name)
			}
		}
	})
}

// lookTool finds a command on PATH; without it the test skips, or fails
// under CI=true.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed, and CI must check template.yaml: %v", name, err)
		}
		t.Skipf("%s is not installed (%v); the template checks need it", name, err)
	}
	return bin
}

// resource returns the properties of a resource of the template, failing
// unless it has the type.
func resource(t *testing.T, tpl any, id, typ string) any {
	t.Helper()
	res := lookup(tpl, "Resources", id)
	if got := lookup(res, "Type"); got != typ {
		t.Fatalf("resource %s has type %#v, want %s", id, got, typ)
	}
	return lookup(res, "Properties")
}

// functionProp is a function's property, or else the Globals' one.
func functionProp(tpl any, id, name string) any {
	if v := lookup(tpl, "Resources", id, "Properties", name); v != nil {
		return v
	}
	return lookup(tpl, "Globals", "Function", name)
}

// functionEnv is a function's environment: the Globals' variables
// overridden by its own.
func functionEnv(tpl any, id string) map[string]any {
	env := map[string]any{}
	for _, vars := range []any{
		lookup(tpl, "Globals", "Function", "Environment", "Variables"),
		lookup(tpl, "Resources", id, "Properties", "Environment", "Variables"),
	} {
		for k, v := range asMap(vars) {
			env[k] = v
		}
	}
	return env
}

// getAtt is Fn::GetAtt in the form loadTemplate gives every spelling of it.
func getAtt(resource, attr string) any {
	return map[string]any{"Fn::GetAtt": []any{resource, attr}}
}
