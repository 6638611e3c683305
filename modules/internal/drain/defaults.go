package drain

// WithDefaults returns c with every zero field set to its default: what a
// Drainer built from c will use. A config layer that shows or checks the
// effective values (the sentry_silo app) asks here, so that each default
// is declared once.
func (c Config) WithDefaults() Config { return c.withDefaults() }
