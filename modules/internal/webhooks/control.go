package webhooks

// Vercel and Google webhooks are always answered by the control silo
// application itself; the handler passes them on without reading the body.
func init() {
	registerControl("vercel")
	registerControl("google")
}

var controlOnly = map[string]bool{}

func registerControl(provider string) {
	controlOnly[provider] = true
}
