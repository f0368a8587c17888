package stepwise_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The resources of the stack the functions' roles name, spelled as
// render spells them.
const (
	grantTable   = "!GetAtt Table.Arn"
	grantIndex   = "!Sub ${Table.Arn}/index/GSI1"
	grantObjects = "!Sub ${BlobBucket.Arn}/*"
	grantQueue   = "!GetAtt WorkQueue.Arn"
	grantBus     = "!GetAtt EventBus.Arn"
	// A secret named rather than given by ARN has six random characters
	// after its name in its ARN.
	grantSecret = "!If [SecretKeyIsArn, !Ref SecretKeySecretId, " +
		"!Sub arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretKeySecretId}-??????]"
)

// wildcardResources are the only resources with a "*" in them, and why
// AWS needs it there.
var wildcardResources = map[string]string{
	grantObjects: "S3 grants on objects by key pattern; the keys are <tenant>/<sha-256>, made at run time",
	grantSecret:  "a secret known by name has six random characters after it in its ARN; the parameter's pattern keeps wildcards out of the name",
}

// functionRoles is, for each function of the template, its role and every
// action the role allows on every resource: exactly what the function's
// code performs. ApiFunction's grants besides its logs are what the SDK
// calls of the adapters it runs need (TestTemplateIAM checks them against
// the code). WorkerFunction's are the same without dynamodb:DeleteItem
// (only catalog deletes and record updates, which go through the API,
// delete items; the worker creates records at cold start and commits
// executions), plus what Lambda's SQS event source does with the role.
// OpenAIFunction's are the worker's without the event source's: it runs
// executions in its requests and hands on what a request cannot finish.
// IngestFunction's are the OpenAI function's: it stores raw events and
// events, and hands them to the bus (or, without one, to the queue).
var functionRoles = []struct {
	function, role, logGroup string
	grants                   map[string][]string
}{
	{"ApiFunction", "ApiRole", "ApiLogGroup", map[string][]string{
		"dynamodb:GetItem":              {grantTable},
		"dynamodb:Query":                {grantTable, grantIndex},
		"dynamodb:PutItem":              {grantTable},
		"dynamodb:UpdateItem":           {grantTable},
		"dynamodb:DeleteItem":           {grantTable},
		"s3:GetObject":                  {grantObjects},
		"s3:PutObject":                  {grantObjects},
		"sqs:SendMessage":               {grantQueue},
		"events:PutEvents":              {grantBus},
		"secretsmanager:GetSecretValue": {grantSecret},
	}},
	{"WorkerFunction", "WorkerRole", "WorkerLogGroup", map[string][]string{
		"dynamodb:GetItem":              {grantTable},
		"dynamodb:Query":                {grantTable, grantIndex},
		"dynamodb:PutItem":              {grantTable},
		"dynamodb:UpdateItem":           {grantTable},
		"s3:GetObject":                  {grantObjects},
		"s3:PutObject":                  {grantObjects},
		"sqs:SendMessage":               {grantQueue},
		"sqs:ReceiveMessage":            {grantQueue},
		"sqs:DeleteMessage":             {grantQueue},
		"sqs:GetQueueAttributes":        {grantQueue},
		"events:PutEvents":              {grantBus},
		"secretsmanager:GetSecretValue": {grantSecret},
	}},
	{"OpenAIFunction", "OpenAIRole", "OpenAILogGroup", map[string][]string{
		"dynamodb:GetItem":              {grantTable},
		"dynamodb:Query":                {grantTable, grantIndex},
		"dynamodb:PutItem":              {grantTable},
		"dynamodb:UpdateItem":           {grantTable},
		"s3:GetObject":                  {grantObjects},
		"s3:PutObject":                  {grantObjects},
		"sqs:SendMessage":               {grantQueue},
		"events:PutEvents":              {grantBus},
		"secretsmanager:GetSecretValue": {grantSecret},
	}},
	{"IngestFunction", "IngestRole", "IngestLogGroup", map[string][]string{
		"dynamodb:GetItem":              {grantTable},
		"dynamodb:Query":                {grantTable, grantIndex},
		"dynamodb:PutItem":              {grantTable},
		"dynamodb:UpdateItem":           {grantTable},
		"s3:GetObject":                  {grantObjects},
		"s3:PutObject":                  {grantObjects},
		"sqs:SendMessage":               {grantQueue},
		"events:PutEvents":              {grantBus},
		"secretsmanager:GetSecretValue": {grantSecret},
	}},
}

// envForGrant ties each variable naming a resource to the grant that the
// resource is useless without: a function has the variable exactly when
// its role has the grant.
var envForGrant = map[string]string{
	"STEPWISE_TABLE":          "dynamodb:GetItem",
	"STEPWISE_QUEUE_URL":      "sqs:SendMessage",
	"STEPWISE_BUCKET":         "s3:GetObject",
	"STEPWISE_EVENT_BUS":      "events:PutEvents",
	"STEPWISE_SECRET_KEY_ARN": "secretsmanager:GetSecretValue",
}

// TestTemplateIAM checks that every function's role allows exactly what
// its code performs, on this stack's resources only, and nothing more
// anywhere in the template.
func TestTemplateIAM(t *testing.T) {
	tpl := loadTemplate(t, "template.yaml")

	for _, fr := range functionRoles {
		t.Run(fr.function+" role allows exactly its table", func(t *testing.T) {
			if got, want := functionProp(tpl, fr.function, "Role"), getAtt(fr.role, "Arn"); !equalJSON(got, want) {
				t.Fatalf("Role = %#v, want %#v: SAM's generated roles carry managed policies on every log group and queue", got, want)
			}
			if p := functionProp(tpl, fr.function, "Policies"); p != nil {
				t.Errorf("Policies = %#v: with its own Role the function takes its grants from there", p)
			}
			if got, want := lookup(functionProp(tpl, fr.function, "LoggingConfig"), "LogGroup"), map[string]any{"Ref": fr.logGroup}; !equalJSON(got, want) {
				t.Errorf("LoggingConfig.LogGroup = %#v, want %#v, the group its role may write to", got, want)
			}
			resource(t, tpl, fr.logGroup, "AWS::Logs::LogGroup")
			role := resource(t, tpl, fr.role, "AWS::IAM::Role")
			for _, prop := range []string{"ManagedPolicyArns", "PermissionsBoundary"} {
				if v := lookup(role, prop); v != nil {
					t.Errorf("%s.%s = %#v: every grant is listed inline", fr.role, prop, v)
				}
			}
			trust := statements(lookup(role, "AssumeRolePolicyDocument"))
			if len(trust) != 1 || !equalJSON(lookup(trust[0], "Principal"), map[string]any{"Service": "lambda.amazonaws.com"}) ||
				!equalJSON(stringList(lookup(trust[0], "Action")), []string{"sts:AssumeRole"}) {
				t.Errorf("%s trusts %#v, want Lambda alone", fr.role, trust)
			}
			want := map[string][]string{
				"logs:CreateLogStream": {"!GetAtt " + fr.logGroup + ".Arn"},
				"logs:PutLogEvents":    {"!GetAtt " + fr.logGroup + ".Arn"},
			}
			maps.Copy(want, fr.grants)
			var got map[string][]string
			for _, p := range asList(lookup(role, "Policies")) {
				got = allowed(t, lookup(p, "PolicyDocument"), got)
			}
			for _, action := range slices.Sorted(maps.Keys(union(got, want))) {
				g, w := got[action], want[action]
				if !slices.Equal(g, w) {
					t.Errorf("%s on %q, want on %q", action, g, w)
				}
			}
		})
	}

	t.Run("grants follow the adapters' SDK calls", func(t *testing.T) {
		need := sdkGrants(t, "infra/awsdynamo", "infra/awss3", "infra/awssqs", "infra/awsbus", "functions/internal/lambdaenv")
		api := functionRoles[0]
		if api.function != "ApiFunction" {
			t.Fatalf("functionRoles starts with %s, want ApiFunction", api.function)
		}
		have := map[string]bool{}
		for action, resources := range api.grants {
			for _, r := range resources {
				have[action+" on "+grantKind[r]] = true
			}
		}
		for _, g := range slices.Sorted(maps.Keys(need)) {
			if !have[g] {
				t.Errorf("the code needs %s (%s), which ApiFunction's role lacks", g, strings.Join(need[g], ", "))
			}
		}
		for _, g := range slices.Sorted(maps.Keys(have)) {
			if need[g] == nil {
				t.Errorf("ApiFunction's role allows %s, which no SDK call of the code needs", g)
			}
		}
	})

	t.Run("variables name only resources the role may use", func(t *testing.T) {
		for _, fr := range functionRoles {
			env := functionEnv(tpl, fr.function)
			for name, action := range envForGrant {
				_, hasVar := env[name]
				if _, hasGrant := fr.grants[action]; hasVar != hasGrant {
					t.Errorf("%s: %s set = %v, but %s granted = %v", fr.function, name, hasVar, action, hasGrant)
				}
			}
		}
	})

	t.Run("no managed policies", func(t *testing.T) {
		walk(tpl, "", func(path string, key string, v any) {
			if strings.HasSuffix(key, "CrudPolicy") || strings.Contains(key, "FullAccess") || key == "ManagedPolicyArns" {
				t.Errorf("%s: %s grants more than the code performs", path, key)
			}
			if s, ok := v.(string); ok && (strings.Contains(s, "FullAccess") || strings.Contains(s, ":iam::aws:policy/")) {
				t.Errorf("%s = %q: an AWS managed policy", path, s)
			}
		})
		for id, res := range asMap(lookup(tpl, "Resources")) {
			switch typ := lookup(res, "Type"); typ {
			case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy":
				t.Errorf("%s is an %s: grants belong in the functions' roles, where the table above checks them", id, typ)
			}
		}
	})

	t.Run("no statement allows everything", func(t *testing.T) {
		docs := 0
		walk(tpl, "", func(path string, key string, v any) {
			if key != "PolicyDocument" && key != "AssumeRolePolicyDocument" {
				return
			}
			docs++
			for i, st := range statements(v) {
				where := fmt.Sprintf("%s statement %d", path, i)
				for _, k := range []string{"NotAction", "NotResource", "NotPrincipal"} {
					if lookup(st, k) != nil {
						t.Errorf("%s has %s, which allows everything it does not name", where, k)
					}
				}
				for _, a := range stringList(lookup(st, "Action")) {
					if strings.Contains(a, "*") {
						t.Errorf("%s allows action %q", where, a)
					}
				}
				for _, r := range asListOrOne(lookup(st, "Resource")) {
					s := render(r)
					if s == "*" || (strings.ContainsAny(s, "*?") && wildcardResources[s] == "") {
						t.Errorf("%s allows resource %q", where, s)
					}
				}
			}
		})
		// The four roles' trust and permissions, and the queue policy.
		if docs < 2*len(functionRoles)+1 {
			t.Errorf("found %d policy documents, want at least %d: the walk missed some", docs, 2*len(functionRoles)+1)
		}
	})

	t.Run("the secret's name cannot widen its grant", func(t *testing.T) {
		pattern, _ := lookup(tpl, "Parameters", "SecretKeySecretId", "AllowedPattern").(string)
		re, err := regexp.Compile(pattern)
		if err != nil {
			t.Fatalf("SecretKeySecretId's AllowedPattern %q: %v", pattern, err)
		}
		for value, want := range map[string]bool{
			"stepwise/secret-key": true,
			"arn:aws:secretsmanager:eu-west-1:123456789012:secret:stepwise/secret-key-AbCdEf": true,
			"*":                 false,
			"stepwise/*":        false,
			"stepwise/secret-?": false,
			"arn:aws:secretsmanager:eu-west-1:123456789012:secret:*": false,
			"": false,
		} {
			if got := re.MatchString(value); got != want {
				t.Errorf("SecretKeySecretId %q accepted = %v, want %v", value, got, want)
			}
		}
	})

	t.Run("logs expire", func(t *testing.T) {
		for _, fr := range functionRoles {
			if got := lookup(resource(t, tpl, fr.logGroup, "AWS::Logs::LogGroup"), "RetentionInDays"); !equalJSON(got, map[string]any{"Ref": "LogRetentionDays"}) {
				t.Errorf("%s.RetentionInDays = %#v, want the LogRetentionDays parameter", fr.logGroup, got)
			}
		}
	})

	t.Run("SAM adds nothing to the roles", func(t *testing.T) {
		out := samTransform(t)
		for id, res := range asMap(lookup(out, "Resources")) {
			switch lookup(res, "Type") {
			case "AWS::IAM::Role":
				if v := lookup(res, "Properties", "ManagedPolicyArns"); v != nil {
					t.Errorf("after the SAM transform, %s has ManagedPolicyArns %#v", id, v)
				}
			case "AWS::Lambda::Function":
				want := ""
				for _, fr := range functionRoles {
					if fr.function == id {
						want = fr.role
					}
				}
				if got := lookup(res, "Properties", "Role"); want == "" || !equalJSON(got, getAtt(want, "Arn")) {
					t.Errorf("after the SAM transform, function %s has role %#v, want %s", id, got, want)
				}
			}
		}
		for _, fr := range functionRoles {
			if !equalJSON(lookup(out, "Resources", fr.role, "Properties"), lookup(tpl, "Resources", fr.role, "Properties")) {
				t.Errorf("the SAM transform changed %s", fr.role)
			}
		}
	})
}

// grantKind names the resources of the grants as sdkGrants does.
var grantKind = map[string]string{
	grantTable: "table", grantIndex: "index", grantObjects: "objects",
	grantQueue: "queue", grantBus: "bus", grantSecret: "secret",
}

// sdkService is, for each AWS SDK service package the functions use, the
// prefix of its IAM actions and the resource its calls act on.
var sdkService = map[string]struct{ prefix, kind string }{
	"dynamodb":       {"dynamodb", "table"},
	"s3":             {"s3", "objects"},
	"sqs":            {"sqs", "queue"},
	"eventbridge":    {"events", "bus"},
	"secretsmanager": {"secretsmanager", "secret"},
}

// sdkAction is the IAM action of the SDK operations whose action has
// another name.
var sdkAction = map[string]string{
	"s3:HeadObject":                    "s3:GetObject",
	"sqs:SendMessageBatch":             "sqs:SendMessage",
	"sqs:DeleteMessageBatch":           "sqs:DeleteMessage",
	"sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
	"dynamodb:TransactGetItems":        "dynamodb:GetItem",
}

// transactItem is the IAM action of each kind of TransactWriteItem:
// TransactWriteItems has no action of its own, IAM checks each item.
var transactItem = map[string]string{
	"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem",
	"Delete": "dynamodb:DeleteItem", "ConditionCheck": "dynamodb:ConditionCheckItem",
}

// notDeployed are the functions of the code whose SDK calls no deployed
// function makes, and why.
var notDeployed = map[string]string{
	"infra/awsdynamo.CreateTable": "the template creates the table; tests and the CLI call CreateTable",
}

// sdkGrants reads the shipped Go files of dirs and returns the grants
// their AWS SDK calls need, as "action on kind", each with the places
// that need it. A call is recognised by its input (&dynamodb.QueryInput{
// ...}); a DynamoDB query that names an index needs the index.
func sdkGrants(t *testing.T, dirs ...string) map[string][]string {
	t.Helper()
	need := map[string][]string{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", dir, err)
		}
		if len(pkgs) == 0 {
			t.Fatalf("%s holds no Go package", dir)
		}
		for _, p := range pkgs {
			for _, f := range p.Files {
				services, types := sdkImports(f)
				for _, d := range f.Decls {
					fd, ok := d.(*ast.FuncDecl)
					if !ok || notDeployed[dir+"."+fd.Name.Name] != "" {
						continue
					}
					ast.Inspect(fd, func(n ast.Node) bool {
						lit, ok := n.(*ast.CompositeLit)
						if !ok {
							return true
						}
						sel, ok := lit.Type.(*ast.SelectorExpr)
						if !ok {
							return true
						}
						x, ok := sel.X.(*ast.Ident)
						if !ok {
							return true
						}
						at := fset.Position(lit.Pos())
						where := filepath.ToSlash(at.Filename) + ":" + strconv.Itoa(at.Line)
						if svc, ok := services[x.Name]; ok && strings.HasSuffix(sel.Sel.Name, "Input") {
							op := strings.TrimSuffix(sel.Sel.Name, "Input")
							if svc.prefix == "dynamodb" && op == "TransactWriteItems" {
								return true // its items say
							}
							action := svc.prefix + ":" + op
							if a, ok := sdkAction[action]; ok {
								action = a
							}
							kind := svc.kind
							if svc.prefix == "dynamodb" && hasField(lit, "IndexName") {
								kind = "index"
							}
							need[action+" on "+kind] = append(need[action+" on "+kind], where)
						}
						if types[x.Name] && sel.Sel.Name == "TransactWriteItem" {
							for _, el := range lit.Elts {
								kv, ok := el.(*ast.KeyValueExpr)
								if !ok {
									continue
								}
								key, _ := kv.Key.(*ast.Ident)
								action := ""
								if key != nil {
									action = transactItem[key.Name]
								}
								if action == "" {
									t.Errorf("%s: TransactWriteItem field %v has no IAM action in this test's table", where, kv.Key)
									continue
								}
								need[action+" on table"] = append(need[action+" on table"], where)
							}
						}
						return true
					})
				}
			}
		}
	}
	return need
}

// sdkImports returns the names under which f imports the SDK's service
// packages, and those of DynamoDB's types package.
func sdkImports(f *ast.File) (services map[string]struct{ prefix, kind string }, dynamoTypes map[string]bool) {
	const root = "github.com/aws/aws-sdk-go-v2/service/"
	services, dynamoTypes = map[string]struct{ prefix, kind string }{}, map[string]bool{}
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		rest, ok := strings.CutPrefix(path, root)
		if !ok {
			continue
		}
		name := filepath.Base(path)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		if rest == "dynamodb/types" {
			dynamoTypes[name] = true
		}
		if svc, ok := sdkService[rest]; ok {
			services[name] = svc
		}
	}
	return services, dynamoTypes
}

// hasField reports whether a composite literal sets the field.
func hasField(lit *ast.CompositeLit, field string) bool {
	for _, el := range lit.Elts {
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			if id, ok := kv.Key.(*ast.Ident); ok && id.Name == field {
				return true
			}
		}
	}
	return false
}

// allowed adds to into the resources doc allows each action on, sorted,
// failing on anything but plain Allow statements.
func allowed(t *testing.T, doc any, into map[string][]string) map[string][]string {
	t.Helper()
	if into == nil {
		into = map[string][]string{}
	}
	for i, st := range statements(doc) {
		if e := lookup(st, "Effect"); e != "Allow" {
			t.Errorf("statement %d: Effect %#v, want Allow", i, e)
		}
		for _, k := range []string{"NotAction", "NotResource", "Principal", "Condition"} {
			if v := lookup(st, k); v != nil {
				t.Errorf("statement %d has %s %#v, which this test does not model", i, k, v)
			}
		}
		for _, a := range stringList(lookup(st, "Action")) {
			for _, r := range asListOrOne(lookup(st, "Resource")) {
				if s := render(r); !slices.Contains(into[a], s) {
					into[a] = append(into[a], s)
				}
			}
			slices.Sort(into[a])
		}
	}
	for a := range into {
		slices.Sort(into[a])
	}
	return into
}

// statements returns a policy document's statements, however many.
func statements(doc any) []any { return asListOrOne(lookup(doc, "Statement")) }

// asListOrOne is v's items, or v alone when it is not a list (IAM takes
// either for Statement, Action and Resource).
func asListOrOne(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

// stringList is asListOrOne for lists of strings.
func stringList(v any) []string {
	var out []string
	for _, x := range asListOrOne(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// render spells a value of the template as its short YAML form would
// (!Ref, !GetAtt, !Sub, !If), for comparisons and messages.
func render(v any) string {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		if l, ok := v.([]any); ok {
			parts := make([]string, len(l))
			for i, x := range l {
				parts[i] = render(x)
			}
			return "[" + strings.Join(parts, ", ") + "]"
		}
		return fmt.Sprint(v)
	}
	for k, arg := range m {
		switch k {
		case "Ref":
			return "!Ref " + render(arg)
		case "Fn::GetAtt":
			if l := stringList(arg); len(l) == 2 {
				return "!GetAtt " + l[0] + "." + l[1]
			}
		case "Fn::Sub", "Fn::If":
			return "!" + strings.TrimPrefix(k, "Fn::") + " " + render(arg)
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// walk calls fn with every key and value of v, depth first, with the
// path of keys leading to it.
func walk(v any, path string, fn func(path, key string, v any)) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			fn(path+"/"+k, k, x[k])
			walk(x[k], path+"/"+k, fn)
		}
	case []any:
		for i, e := range x {
			p := path + "/" + strconv.Itoa(i)
			fn(p, "", e)
			walk(e, p, fn)
		}
	}
}

// union is the set of the keys of a and b.
func union(a, b map[string][]string) map[string]bool {
	u := map[string]bool{}
	for k := range a {
		u[k] = true
	}
	for k := range b {
		u[k] = true
	}
	return u
}

// equalJSON compares two values of the template by their JSON.
func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// samTransformScript expands the SAM transform of the template on stdin,
// as CloudFormation will, and prints the result. CodeUri is a directory
// for `sam build`; the transform wants an S3 location in its place.
const samTransformScript = `
import json, sys
from cfnlint.decode import decode_str
from samtranslator.translator.transform import transform
class NoManagedPolicies:
    def load(self):
        return {}
tpl, errs = decode_str(sys.stdin.read().replace("CodeUri: .", "CodeUri: s3://bucket/key"))
if errs:
    sys.exit(str(errs))
print(json.dumps(transform(json.loads(json.dumps(tpl, default=str)), {}, NoManagedPolicies())))
`

// samTransform returns the template after SAM's transform, run by the
// library cfn-lint uses (samtranslator) with the Python that has it. Like
// cfn-lint, it skips without it, except under CI=true.
func samTransform(t *testing.T) any {
	t.Helper()
	py := lookTool(t, "python3")
	if out, err := exec.Command(py, "-c", "import cfnlint, samtranslator").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 cannot import cfnlint and samtranslator, and CI must check template.yaml: %v\n%s", err, out)
		}
		t.Skipf("python3 cannot import cfnlint and samtranslator (%v); this check needs them", err)
	}
	src, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", samTransformScript)
	cmd.Stdin = strings.NewReader(string(src))
	cmd.Env = append(os.Environ(), "AWS_DEFAULT_REGION=us-east-1")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("SAM transform: %v\n%s", err, stderr)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("SAM transform output: %v", err)
	}
	return v
}
