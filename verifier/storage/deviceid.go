package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// DeviceReader reads devices by id, and in id order.
type DeviceReader interface {
	GetDevice(ctx context.Context, id string) (Device, error)
	ListDevices(ctx context.Context, afterID string, limit int) ([]Device, error)
}

// ErrAmbiguousDevice is the start of more than one device's id.
var ErrAmbiguousDevice = errors.New("more than one device's id starts with that")

// maxShownID bounds an id quoted back in an error.
const maxShownID = 64

// ResolveDeviceID is the whole id of the enrolled device (revoked or not)
// named by id: the id itself, or the start of one that no other device's id
// starts with, as the tables show ids ("3f2a8c1e"), in any case. Otherwise
// the error wraps ErrNotFound, or ErrAmbiguousDevice.
func ResolveDeviceID(ctx context.Context, s DeviceReader, id string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("no device id: %w", ErrNotFound)
	}
	shown := id
	if len(shown) > maxShownID {
		shown = shown[:maxShownID] + "…"
	}
	// Device ids are UUIDs: anything but letters, digits and '-' names no
	// device, and never reaches a database (which may refuse its bytes as
	// an error).
	if strings.ContainsFunc(id, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-')
	}) {
		return "", noDevice(shown)
	}
	_, err := s.GetDevice(ctx, id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	// Ids are stored lowercase; every other id that starts with prefix
	// sorts after it, so the first two after it say whether one does, or
	// more.
	prefix := strings.ToLower(id)
	if prefix != id {
		if _, err := s.GetDevice(ctx, prefix); err == nil {
			return prefix, nil
		} else if !errors.Is(err, ErrNotFound) {
			return "", err
		}
	}
	devs, err := s.ListDevices(ctx, prefix, 2)
	if err != nil {
		return "", err
	}
	var found []string
	for _, d := range devs {
		if strings.HasPrefix(d.ID, prefix) {
			found = append(found, d.ID)
		}
	}
	switch len(found) {
	case 0:
		return "", noDevice(shown)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%q: %w; give more of it", shown, ErrAmbiguousDevice)
}

// noDevice is ErrNotFound for the id shown.
type noDevice string

func (e noDevice) Error() string {
	return fmt.Sprintf("no enrolled device's id is or starts with %q", string(e))
}

func (noDevice) Is(target error) bool { return target == ErrNotFound }
