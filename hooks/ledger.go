package hooks

import "time"

// ReplayLedger is a replay cache shared with other brokers of a cluster
// (package cluster implements it). The Guard asks it after its own cache
// accepted a command.
type ReplayLedger interface {
	// Claim records that the envelope kid/nonce, valid until exp, is
	// accepted. It returns an error whose envelope.ReasonOf is
	// envelope.ReasonReplay when any broker claimed it before, and any
	// other error when it cannot tell; the Guard refuses the command on
	// every error, so that no command can run twice.
	Claim(kid, nonce string, exp time.Time) error
}

// ShareReplay makes the Guard check every command it accepts against l
// too. Call it before the server starts.
func (g *Guard) ShareReplay(l ReplayLedger) { g.ledger = l }
