package osquery

import (
	"context"
	"errors"
	"fmt"
	"strings"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// Facts reads what enrollment tells the verifier about the machine.
func Facts(ctx context.Context, q Querier) (*agentv1.DeviceFacts, error) {
	sys, err := one(ctx, q, "SELECT uuid, hardware_serial, hardware_model, computer_name, hostname FROM system_info")
	if err != nil {
		return nil, fmt.Errorf("reading system_info: %w", err)
	}
	osv, err := one(ctx, q, "SELECT name, version, platform FROM os_version")
	if err != nil {
		return nil, fmt.Errorf("reading os_version: %w", err)
	}
	f := &agentv1.DeviceFacts{
		HardwareUuid: sys["uuid"],
		SerialNumber: sys["hardware_serial"],
		Model:        sys["hardware_model"],
		Hostname:     sys["computer_name"],
		OsName:       osv["name"],
		OsVersion:    osv["version"],
		Platform:     osv["platform"],
	}
	if f.Hostname == "" {
		f.Hostname = sys["hostname"]
	}
	if f.HardwareUuid == "" {
		return nil, errors.New("osquery reported no hardware UUID (system_info.uuid)")
	}
	// Every Mac has a serial number, and the verifier keeps the one a
	// device enrolls with for good: Cloudflare matches Macs by it, and a
	// Mac enrolled without one would leave its real serial for anyone with
	// the enroll secret to claim. osquery has been seen to return it empty
	// now and then; enrollment waits until it does not.
	if strings.TrimSpace(f.SerialNumber) == "" && f.Platform == "darwin" {
		return nil, errors.New("osquery reported no serial number (system_info.hardware_serial)")
	}
	return f, nil
}

func one(ctx context.Context, q Querier, sql string) (map[string]string, error) {
	rows, err := q.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("expected 1 row, got %d", len(rows))
	}
	return rows[0], nil
}
