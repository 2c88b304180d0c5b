package edgewire

import (
	"encoding/json"
	"fmt"
)

// DoorCount is one inactive_redirects increment: N visitors sent on without a click on Day
// (UTC, YYYY-MM-DD) for Reason (collections.Inactive*), ids "" where none.
type DoorCount struct {
	Day       string `json:"day"`
	Reason    string `json:"reason"`
	Program   string `json:"program,omitempty"`
	Affiliate string `json:"affiliate,omitempty"`
	Link      string `json:"link,omitempty"`
	N         int64  `json:"n"`
}

// Doors is the door visits a node counted in one interval, published as one message. ID is
// the message id JetStream de-duplicates on and the primary remembers once it counted them.
type Doors struct {
	V      int         `json:"v"`
	ID     string      `json:"id"`
	Counts []DoorCount `json:"counts"`
}

// EncodeDoors is the message body of d, in this package's format.
func EncodeDoors(d Doors) ([]byte, error) {
	d.V = Version
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode doors %s: %w", d.ID, err)
	}
	return b, nil
}

// DecodeDoors reads a message body; one of an unknown format, without an id or with a count
// that is not positive is an error.
func DecodeDoors(b []byte) (Doors, error) {
	var d Doors
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("decode doors: %w", err)
	}
	if d.V != Version {
		return d, fmt.Errorf("decode doors %s: format %d, this node reads %d", d.ID, d.V, Version)
	}
	if d.ID == "" {
		return d, fmt.Errorf("decode doors: an id is required")
	}
	for _, c := range d.Counts {
		if c.N <= 0 || c.Day == "" || c.Reason == "" {
			return d, fmt.Errorf("decode doors %s: count %+v needs a day, a reason and n > 0", d.ID, c)
		}
	}
	return d, nil
}
