package store

import (
	"context"
	"strings"
)

// Seer routing on SQLite; see postgres_slack.go.

// LinkedUser implements webhooks.SlackIdentities.
func (s *SQLite) LinkedUser(ctx context.Context, providerType, workspaceID, slackUserID string) (int64, error) {
	var userID int64
	err := s.sqliteOne(ctx, "sqlite linked identity", `SELECT i.user_id
		FROM sentry_identity i JOIN sentry_identityprovider idp ON idp.id = i.idp_id
		WHERE idp.type = ? AND idp.external_id = ? AND i.external_id = ?
		ORDER BY i.id LIMIT 1`, []any{providerType, workspaceID, slackUserID}, &userID)
	return userID, err
}

// MemberOrganizations implements webhooks.SlackIdentities.
func (s *SQLite) MemberOrganizations(ctx context.Context, userID int64, orgIDs []int64) ([]int64, error) {
	if len(orgIDs) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(orgIDs)+1)
	args = append(args, userID)
	for _, id := range orgIDs {
		args = append(args, id)
	}
	rows, err := s.reader.QueryContext(ctx, `SELECT DISTINCT organization_id FROM sentry_organizationmembermapping
		WHERE user_id = ? AND invite_status = 0 AND organization_id IN (?`+strings.Repeat(",?", len(orgIDs)-1)+`)`, args...)
	if err != nil {
		return nil, sqliteErr("sqlite memberships", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, sqliteErr("sqlite memberships", err)
		}
		out = append(out, id)
	}
	return out, sqliteErr("sqlite memberships", rows.Err())
}
