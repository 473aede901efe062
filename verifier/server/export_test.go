package server

import "context"

// Sweep runs one sweep of the expired and retired rows, as the server does
// every minute.
func (s *Server) Sweep(ctx context.Context) { s.sweep(ctx, s.log) }
