package edgewire

import (
	"encoding/json"
	"fmt"
	"time"
)

// Click is one answered redirect as a node publishes it: the facts seen at the edge. What
// needs the primary's state (bot, rate and self flags, the per-IP ceiling, uniqueness) is
// decided when the primary ingests it, from these facts, so it stays exact across nodes.
type Click struct {
	V           int    `json:"v"`
	ID          string `json:"id"` // time-ordered; also the message id JetStream de-duplicates on
	Link        string `json:"link,omitempty"`
	Affiliate   string `json:"affiliate"`
	Program     string `json:"program"`
	Visitor     string `json:"visitor"`
	NewVisitor  bool   `json:"new_visitor,omitempty"`
	SelfCookie  bool   `json:"self_cookie,omitempty"` // pba_self named the affiliate
	IPHash      string `json:"ip_hash"`
	NetworkHash string `json:"network_hash"`
	UserAgent   string `json:"user_agent,omitempty"`
	Referrer    string `json:"referrer,omitempty"`
	Country     string `json:"country,omitempty"`
	SubID       string `json:"sub_id,omitempty"`
	Created     int64  `json:"created"` // Unix milliseconds, UTC
}

// CreatedTime is Created as a time.
func (c Click) CreatedTime() time.Time { return time.UnixMilli(c.Created).UTC() }

// EncodeClick is the message body of c, in this package's format.
func EncodeClick(c Click) ([]byte, error) {
	c.V = Version
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode click %s: %w", c.ID, err)
	}
	return b, nil
}

// DecodeClick reads a message body; a click of an unknown format or without ids is an error.
func DecodeClick(b []byte) (Click, error) {
	var c Click
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("decode click: %w", err)
	}
	if c.V != Version {
		return c, fmt.Errorf("decode click %s: format %d, this node reads %d", c.ID, c.V, Version)
	}
	if c.ID == "" || c.Affiliate == "" || c.Program == "" {
		return c, fmt.Errorf("decode click %q: id, affiliate and program are required", c.ID)
	}
	return c, nil
}
