package sqlstore

import (
	"context"
	"fmt"
)

// CountAgentVersions counts the unrevoked devices by agent version
// (storage.DeviceStore): one grouped scan of the devices table, a row per
// distinct version back, however many devices share it.
func (s *Store) CountAgentVersions(ctx context.Context) (map[string]int, error) {
	type group struct {
		version string
		devices int
	}
	groups, err := list(ctx, s.reader(), func(sc scanner) (g group, err error) {
		err = sc.Scan(&g.version, &g.devices)
		return g, err
	}, `SELECT agent_version, count(*) FROM devices WHERE revoked_at = 0 GROUP BY agent_version`)
	if err != nil {
		return nil, fmt.Errorf("counting devices by agent version: %w", err)
	}
	counts := make(map[string]int, len(groups))
	for _, g := range groups {
		counts[g.version] = g.devices
	}
	return counts, nil
}
