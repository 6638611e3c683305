package routes

// Table is the route table of the standalone apigw service (§1.8 of the
// hybrid-cloud reference, src/apigw/views/proxy.py), in its order, plus the
// Sentry App and JS SDK loader routes of the Django gateway. The first row
// that matches wins; a path no row matches goes to the next handler (the
// control silo).
//
// Pattern syntax, one path segment per element between slashes:
//
//	literal   the segment itself
//	{key}     any non-empty segment, captured as the routing key
//	*         any non-empty segment
//	#         a segment of digits only
//	**        (last only) zero or more further segments
//
// A trailing slash on the request path is ignored: Sentry's URLs end with
// one, apigw's patterns do not.
var Table = []Route{
	// 1. A region endpoint living under the otherwise control-only
	// organization integrations path, so it comes first.
	{"/api/0/organizations/{key}/integrations/coding-agents", Organization, false},

	// 2. Control carve-outs under /api/0/organizations/<org>/.
	{"/api/0/organizations/*/api-keys/**", Control, false},
	{"/api/0/organizations/*/audit-logs", Control, false},
	{"/api/0/organizations/*/broadcasts", Control, false},
	{"/api/0/organizations/*/data-secrecy", Control, false},
	{"/api/0/organizations/*/integrations", Control, false},
	{"/api/0/organizations/*/integrations/*", Control, false},
	{"/api/0/organizations/*/integrations/*/channel-validate", Control, false},
	{"/api/0/organizations/*/integrations/*/channels", Control, false},
	{"/api/0/organizations/*/integrations/*/repo-sync", Control, false},
	{"/api/0/organizations/*/integrations/direct-enable/**", Control, false},
	{"/api/0/organizations/*/intercom-jwt", Control, false},
	{"/api/0/organizations/*/monitoring-providers/**", Control, false},
	{"/api/0/organizations/*/org-auth-tokens/**", Control, false},
	{"/api/0/organizations/*/pipeline/*", Control, false},
	{"/api/0/organizations/*/sentry-app-components", Control, false},
	{"/api/0/organizations/*/sentry-app-installations/**", Control, false},
	{"/api/0/organizations/*/sentry-apps/**", Control, false},

	// 3. Uploads and downloads by organization, with upload_timeout.
	{"/api/0/organizations/{key}/*/files/dsyms", Organization, true},
	{"/api/0/organizations/{key}/*/files/installablepreprodartifact/*", Organization, true},
	{"/api/0/organizations/{key}/*/files/preprodartifacts/*", Organization, true},
	{"/api/0/organizations/{key}/*/releases/*/files", Organization, true},
	{"/api/0/organizations/{key}/chunk-upload", Organization, true},
	{"/api/0/organizations/{key}/objectstore/**", Organization, true},
	{"/api/0/organizations/{key}/preprodartifacts/*/size-analysis", Organization, true},
	{"/api/0/organizations/{key}/preprodartifacts/snapshots/*/archive", Organization, true},
	{"/api/0/organizations/{key}/releases/*/files", Organization, true},
	// The same uploads under /api/0/projects/<org>/<project>/, where
	// sentry-cli sends them (apigw gives them 90s by a substring match on
	// the path; Django by url_name).
	{"/api/0/projects/{key}/*/files/dsyms", Organization, true},
	{"/api/0/projects/{key}/*/files/installablepreprodartifact/*", Organization, true},
	{"/api/0/projects/{key}/*/files/preprodartifacts/*", Organization, true},
	{"/api/0/projects/{key}/*/releases/*/files", Organization, true},
	{"/api/0/projects/{key}/*/preprodartifacts/snapshots/*/download", Organization, true},

	// 4. Everything else by organization.
	{"/api/0/_admin/customers/{key}/**", Organization, false},
	{"/api/0/customers/{key}/**", Organization, false},
	{"/api/0/internal-stats/{key}/**", Organization, false},
	{"/api/0/organizations/{key}/**", Organization, false},
	{"/api/0/projects/{key}/**", Organization, false},
	{"/api/0/teams/{key}/**", Organization, false},
	{"/organizations/{key}/billing/**", Organization, false},
	{"/organizations/{key}/issues/*/events/*/json", Organization, false},
	{"/organizations/{key}/payments/**", Organization, false},
	{"/organizations/{key}/projects/*/events/*", Organization, false},
	{"/organizations/{key}/projects/*/issues/*/tags/*/export", Organization, false},
	{"/plugins/bitbucket/organizations/{key}/webhook", Organization, false},
	{"/plugins/github/organizations/{key}/webhook", Organization, false},
	{"/team-avatar/{key}/**", Organization, false},
	{"/toolbar/{key}/**", Organization, false},

	// 5. A region by name.
	{"/api/0/_admin/cells/{key}/**", Region, false},

	// 6. The error page embed, by the DSN in its query.
	{"/api/embed/error-page", ErrorPage, false},

	// Sentry App region endpoints (Django SENTRY_APP_REGION_URL_NAMES):
	// by installation uuid -> organization, or by app id/slug -> owner
	// organization. The installation's other paths (details,
	// authorizations) are control endpoints and stay there.
	{"/api/0/sentry-app-installations/{key}/external-requests", SentryAppInstallation, false},
	{"/api/0/sentry-app-installations/{key}/external-issue-actions", SentryAppInstallation, false},
	{"/api/0/sentry-app-installations/{key}/external-issues", SentryAppInstallation, false},
	{"/api/0/sentry-app-installations/{key}/external-issues/*", SentryAppInstallation, false},
	{"/api/0/sentry-apps/{key}/requests", SentryApp, false},
	{"/api/0/sentry-apps/{key}/interaction", SentryApp, false},

	// The JS SDK loader, by the project key (sentry_projectkeymapping);
	// the segment is "<key>.js" or "<key>.min.js".
	{"/js-sdk-loader/{key}", ProjectKey, false},

	// 7. Legacy paths with no organization: the default region.
	{"/api/0/accept-transfer", Default, false},
	{"/api/0/groups/*", Default, false},
	{"/api/0/groups/*/activities", Default, false},
	{"/api/0/groups/*/attachments", Default, false},
	{"/api/0/groups/*/autofix/**", Default, false},
	{"/api/0/groups/*/comments/**", Default, false},
	{"/api/0/groups/*/current-release", Default, false},
	{"/api/0/groups/*/events/**", Default, false},
	{"/api/0/groups/*/external-issues/**", Default, false},
	{"/api/0/groups/*/hashes", Default, false},
	{"/api/0/groups/*/integrations/**", Default, false},
	{"/api/0/groups/*/notes/**", Default, false},
	{"/api/0/groups/*/plugin/**", Default, false},
	{"/api/0/groups/*/plugins/**", Default, false},
	{"/api/0/groups/*/related-issues", Default, false},
	{"/api/0/groups/*/reprocessing", Default, false},
	{"/api/0/groups/*/similar-issues-embeddings", Default, false},
	{"/api/0/groups/*/similar", Default, false},
	{"/api/0/groups/*/stats", Default, false},
	{"/api/0/groups/*/summarize", Default, false},
	{"/api/0/groups/*/tags/**", Default, false},
	{"/api/0/groups/*/user-feedback", Default, false},
	{"/api/0/groups/*/user-reports", Default, false},
	{"/api/0/issues/*", Default, false},
	{"/api/0/issues/*/activities", Default, false},
	{"/api/0/issues/*/attachments", Default, false},
	{"/api/0/issues/*/autofix/**", Default, false},
	{"/api/0/issues/*/comments/**", Default, false},
	{"/api/0/issues/*/current-release", Default, false},
	{"/api/0/issues/*/events/**", Default, false},
	{"/api/0/issues/*/external-issues/**", Default, false},
	{"/api/0/issues/*/hashes", Default, false},
	{"/api/0/issues/*/integrations/**", Default, false},
	{"/api/0/issues/*/notes/**", Default, false},
	{"/api/0/issues/*/plugin/**", Default, false},
	{"/api/0/issues/*/plugins/**", Default, false},
	{"/api/0/issues/*/related-issues", Default, false},
	{"/api/0/issues/*/reprocessing", Default, false},
	{"/api/0/issues/*/similar-issues-embeddings", Default, false},
	{"/api/0/issues/*/similar", Default, false},
	{"/api/0/issues/*/stats", Default, false},
	{"/api/0/issues/*/summarize", Default, false},
	{"/api/0/issues/*/tags/**", Default, false},
	{"/api/0/issues/*/user-feedback", Default, false},
	{"/api/0/issues/*/user-reports", Default, false},
	{"/api/0/projects", Default, false},
	{"/api/0/relays/**", Default, false},
	{"/api/0/seer/models", Default, false},
	{"/api/0/users/*/organizations", Default, false},
	{"/api/hooks/release/**", Default, false},
	{"/issues/*/*/tags/*/export", Default, false},
	{"/organization-avatar/**", Default, false},

	// 8. Legacy short links, last: their leading <org> segment would
	// shadow everything above.
	{"/{key}/*/issues/#/tags/*/export", Organization, false},
	{"/{key}/*/issues/#/actions/*", Organization, false},
	{"/{key}/*/events/*", Organization, false},
}
