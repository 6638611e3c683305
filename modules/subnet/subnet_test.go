package subnet

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const testSecret = "hush-hush-im-invisible"

// The vectors Sentry's own signing tests use.
func TestSignVectors(t *testing.T) {
	const v1 = "v0=b770c1fbf24df2bb01c6d871ef9dc46b8e08279c9101b50d17dd88b2e6d220f3"
	const v2 = "v0=eb15b5f50df431059bceeca87f534415469a69218f6024c01cc9ad7a156aea5b"
	cases := []struct {
		name, base, path, id, body, want string
	}{
		{"vector 1", "https://example.com/api", "chat.postMessage", "123", "", v1},
		{"vector 1, leading slash", "https://example.com/api", "/chat.postMessage", "123", "", v1},
		{"vector 1, trailing slash", "https://example.com/api/", "chat.postMessage", "123", "", v1},
		{"vector 1, both", "https://example.com/api/", "/chat.postMessage", "123", "", v1},
		{"vector 2", "https://slack.com/api", "chat.postMessage?foo=bar", "42", `{"channel":"C1","text":"hi"}`, v2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Sign(testSecret, c.base, c.path, c.id, []byte(c.body))
			if got != c.want {
				t.Fatalf("Sign = %s, want %s", got, c.want)
			}
			if !Verify(testSecret, c.base, c.path, c.id, []byte(c.body), c.want) {
				t.Fatal("Verify rejected the vector")
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	body := []byte(`{"channel":"C1","text":"hi"}`)
	good := Sign(testSecret, "https://slack.com/api", "chat.postMessage?foo=bar", "42", body)
	cases := []struct {
		name, secret, base, path, id, body, sig string
	}{
		{"empty secret", "", "https://slack.com/api", "chat.postMessage?foo=bar", "42", string(body), good},
		{"other secret", "other", "https://slack.com/api", "chat.postMessage?foo=bar", "42", string(body), good},
		{"body altered", testSecret, "https://slack.com/api", "chat.postMessage?foo=bar", "42", `{"channel":"C2","text":"hi"}`, good},
		{"path altered", testSecret, "https://slack.com/api", "chat.postMessage?foo=baz", "42", string(body), good},
		{"base altered", testSecret, "https://evil.com/api", "chat.postMessage?foo=bar", "42", string(body), good},
		{"id altered", testSecret, "https://slack.com/api", "chat.postMessage?foo=bar", "43", string(body), good},
		{"empty signature", testSecret, "https://slack.com/api", "chat.postMessage?foo=bar", "42", string(body), ""},
		{"no prefix", testSecret, "https://slack.com/api", "chat.postMessage?foo=bar", "42", string(body), strings.TrimPrefix(good, "v0=")},
		{"upper case hex", testSecret, "https://slack.com/api", "chat.postMessage?foo=bar", "42", string(body), "v0=" + strings.ToUpper(strings.TrimPrefix(good, "v0="))},
		{"truncated", testSecret, "https://slack.com/api", "chat.postMessage?foo=bar", "42", string(body), good[:len(good)-1]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if Verify(c.secret, c.base, c.path, c.id, []byte(c.body), c.sig) {
				t.Fatal("Verify accepted")
			}
		})
	}
}

func TestParseTimeout(t *testing.T) {
	cases := []struct {
		in            string
		connect, read time.Duration
		ok            bool
	}{
		{"3,30", 3 * time.Second, 30 * time.Second, true},
		{"2.5", 2500 * time.Millisecond, 2500 * time.Millisecond, true},
		{" 1 , 0.5 ", time.Second, 500 * time.Millisecond, true},
		{"1e1", 10 * time.Second, 10 * time.Second, true},
		{"100000", MaxTimeout, MaxTimeout, true},
		{"abc", 0, 0, false},
		{"", 0, 0, false},
		{"0", 0, 0, false},
		{"-1", 0, 0, false},
		{"nan", 0, 0, false},
		{"inf", 0, 0, false},
		{"3,", 0, 0, false},
		{",3", 0, 0, false},
		{"3,30,1", 0, 0, false},
		{"0x10", 0, 0, false},
		{"1_0", 0, 0, false},
		{"1e-300", 0, 0, false},
	}
	for _, c := range cases {
		connect, read, ok := ParseTimeout(c.in)
		if ok != c.ok || connect != c.connect || read != c.read {
			t.Errorf("ParseTimeout(%q) = %v, %v, %v; want %v, %v, %v", c.in, connect, read, ok, c.connect, c.read, c.ok)
		}
	}
	if c, r, ok := ParseTimeout(FormatTimeout(3*time.Second, 1500*time.Millisecond)); !ok || c != 3*time.Second || r != 1500*time.Millisecond {
		t.Fatalf("FormatTimeout round trip: %v %v %v", c, r, ok)
	}
}

func FuzzTimeoutHeader(f *testing.F) {
	for _, s := range []string{"3,30", "2.5", "abc", "", "1e400", "-0", "3,30,", " 1 ,2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		connect, read, ok := ParseTimeout(s)
		if !ok {
			if connect != 0 || read != 0 {
				t.Fatal("values without ok")
			}
			return
		}
		if connect <= 0 || read <= 0 || connect > MaxTimeout || read > MaxTimeout {
			t.Fatalf("ParseTimeout(%q) = %v, %v", s, connect, read)
		}
	})
}

func TestSignRequest(t *testing.T) {
	body := `{"channel":"C1","text":"hi"}`
	r, err := http.NewRequest(http.MethodPost, "https://slack.com/api/chat.postMessage?foo=bar", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	control, _ := url.Parse("http://control.internal:8000")
	if err := SignRequest(r, control, testSecret, "https://slack.com/api/", "42"); err != nil {
		t.Fatal(err)
	}
	if got := r.URL.String(); got != "http://control.internal:8000/api/0/internal/integration-proxy/" {
		t.Fatalf("URL = %s", got)
	}
	want := map[string]string{
		HeaderOrganizationIntegration: "42",
		HeaderBaseURL:                 "https://slack.com/api",
		HeaderPath:                    "chat.postMessage?foo=bar",
		HeaderSignature:               "v0=eb15b5f50df431059bceeca87f534415469a69218f6024c01cc9ad7a156aea5b",
		"Content-Type":                "application/json",
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	got, _ := io.ReadAll(r.Body)
	if string(got) != body || r.ContentLength != int64(len(body)) {
		t.Fatalf("body = %q (%d)", got, r.ContentLength)
	}

	// A pagination link to another host: the base becomes its origin.
	r2, _ := http.NewRequest(http.MethodGet, "https://api.github.com/repositories/1/issues?page=2", nil)
	if err := SignRequest(r2, control, testSecret, "https://ghe.example.com/api/v3", "7"); err != nil {
		t.Fatal(err)
	}
	if b, p := r2.Header.Get(HeaderBaseURL), r2.Header.Get(HeaderPath); b != "https://api.github.com" || p != "repositories/1/issues?page=2" {
		t.Fatalf("base %q path %q", b, p)
	}
	if !Verify(testSecret, r2.Header.Get(HeaderBaseURL), r2.Header.Get(HeaderPath), "7", nil, r2.Header.Get(HeaderSignature)) {
		t.Fatal("signature of a bodiless request does not verify")
	}
	if err := SignRequest(r2, control, "", "https://x", "7"); err == nil {
		t.Fatal("signing without a secret succeeded")
	}
}

// FuzzVerify: arbitrary headers and bodies never panic the signature
// check, and only Sign's own output for exactly these values verifies.
func FuzzVerify(f *testing.F) {
	f.Add("https://slack.com/api", "chat.postMessage", "42", []byte(`{"channel":"C1"}`), "v0=00")
	f.Add("", "", "None", []byte{0xff}, "")
	f.Add("https://example.com/api/", "/chat.postMessage", "123", []byte(nil), "v0=b770c1fbf24df2bb01c6d871ef9dc46b8e08279c9101b50d17dd88b2e6d220f3")
	const secret = "hush-hush-im-invisible"
	f.Fuzz(func(t *testing.T, base, path, oi string, body []byte, sig string) {
		if Verify(secret, base, path, oi, body, sig) && sig != Sign(secret, base, path, oi, body) {
			t.Fatalf("accepted %q, which Sign did not make", sig)
		}
		if !Verify(secret, base, path, oi, body, Sign(secret, base, path, oi, body)) {
			t.Fatal("refused Sign's own signature")
		}
		if Verify("", base, path, oi, body, Sign("", base, path, oi, body)) {
			t.Fatal("verified with no secret set")
		}
	})
}
