package store

import (
	"context"
)

// Seer routing (webhooks.SlackIdentities) reads the identity links and
// memberships of Sentry's control tables: sentry_identity (idp_id,
// user_id, external_id), sentry_identityprovider (type, external_id: the
// provider and the Slack workspace) and sentry_organizationmembermapping
// (organization_id, user_id, invite_status 0 = approved). Never cached: a
// user who links their identity must be routed at once.

// LinkedUser implements webhooks.SlackIdentities.
func (p *Postgres) LinkedUser(ctx context.Context, providerType, workspaceID, slackUserID string) (int64, error) {
	var userID int64
	err := p.one(ctx, p.pool, "postgres linked identity", `SELECT i.user_id
		FROM sentry_identity i JOIN sentry_identityprovider idp ON idp.id = i.idp_id
		WHERE idp.type = $1 AND idp.external_id = $2 AND i.external_id = $3
		ORDER BY i.id LIMIT 1`, []any{providerType, workspaceID, slackUserID}, &userID)
	return userID, err
}

// MemberOrganizations implements webhooks.SlackIdentities.
func (p *Postgres) MemberOrganizations(ctx context.Context, userID int64, orgIDs []int64) ([]int64, error) {
	rows, err := p.pool.Query(ctx, `SELECT DISTINCT organization_id FROM sentry_organizationmembermapping
		WHERE user_id = $1 AND invite_status = 0 AND organization_id = ANY($2)`, userID, orgIDs)
	if err != nil {
		return nil, p.directoryErr("postgres memberships", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, p.directoryErr("postgres memberships", err)
		}
		out = append(out, id)
	}
	return out, p.directoryErr("postgres memberships", rows.Err())
}
