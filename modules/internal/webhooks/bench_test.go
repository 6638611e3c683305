package webhooks

import (
	"context"
	"testing"
)

// githubPushBody is a trimmed GitHub push delivery (about 1.3 KB) with its
// members in GitHub's order: repository first, installation last, so a
// lookup walks the whole body as it does in production.
const githubPushBody = `{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",` +
	`"repository":{"id":4242,"node_id":"R_kgDOAAAAAA","name":"backend","full_name":"acme/backend","private":true,` +
	`"owner":{"name":"acme","email":null,"login":"acme","id":1001,"node_id":"O_kgDOAAAAAQ","type":"Organization","site_admin":false},` +
	`"html_url":"https://github.com/acme/backend","description":"The backend","fork":false,` +
	`"created_at":1700000000,"updated_at":"2024-01-01T00:00:00Z","pushed_at":1700000100,"size":2048,` +
	`"language":"Go","has_issues":true,"archived":false,"disabled":false,"open_issues_count":1,` +
	`"topics":["api","go"],"visibility":"private","default_branch":"main","organization":"acme"},` +
	`"pusher":{"name":"dev","email":"dev@example.com"},` +
	`"sender":{"login":"dev","id":2002,"node_id":"U_kgDOAAAAAg","type":"User","site_admin":false},` +
	`"created":false,"deleted":false,"forced":false,"base_ref":null,"compare":"https://github.com/acme/backend/compare/6113728f27ae...0d1a26e67d8f",` +
	`"commits":[{"id":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","distinct":true,` +
	`"message":"Fix the \"flaky\" test\n\nSee #12.","timestamp":"2024-01-01T00:00:00Z",` +
	`"author":{"name":"Dev","email":"dev@example.com","username":"dev"},"added":[],"removed":[],"modified":["main.go"]}],` +
	`"installation":{"id":555,"node_id":"MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNTU1"}}`

// BenchmarkParseGitHub measures the capture path's parse of a GitHub push:
// routing, the JSON field extraction and the (fake) directory lookup.
func BenchmarkParseGitHub(b *testing.B) {
	env := testEnv(newFakeDir())
	req := github("push", githubPushBody)
	ctx := context.Background()
	b.SetBytes(int64(len(githubPushBody)))
	b.ReportAllocs()
	for b.Loop() {
		_, res, err := Parse(ctx, env, req)
		if err != nil || res.Action != Capture || res.BucketKey != 4242 {
			b.Fatalf("%+v %v", res, err)
		}
	}
}
