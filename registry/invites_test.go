package registry

import (
	"context"
	"testing"
	"time"
)

func TestInvites(t *testing.T) {
	r, _ := openTest(t)
	if _, err := r.AddHome("h1"); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r.now = func() time.Time { return now }

	_, _, err := r.AddInvite("h9", "member", "", 0)
	want(t, "invite to a home that does not exist", err, ErrNotFound, "h9")
	_, _, err = r.AddInvite("h1", "owner", "", 0)
	want(t, "invite with a bad role", err, ErrInvalid, "owner")
	_, _, err = r.AddInvite("h1", "member", "", 48*time.Hour)
	want(t, "invite for two days", err, ErrInvalid, "lasts")

	inv, sec, err := r.AddInvite("h1", "member", "", 0)
	want(t, "invite", err, nil, "")
	if inv.Expires != now.Add(DefaultInviteTTL) || len(inv.User) < len("user:guest-") {
		t.Fatalf("invite %+v", inv)
	}
	_, _, err = r.RedeemInvite("wrong", "Chromium")
	want(t, "a made-up invite", err, ErrDenied, "unknown")
	si, tok, err := r.RedeemInvite(sec, "Chromium on Android")
	want(t, "redeem", err, nil, "")
	if si.User != inv.User || si.Device != "Chromium on Android" {
		t.Fatalf("sign-in %+v", si)
	}
	if m, _ := r.Memberships(inv.User); m["h1"] != "member" {
		t.Fatalf("memberships after the invite: %v", m)
	}
	_, _, err = r.RedeemInvite(sec, "another phone")
	want(t, "the invite a second time", err, ErrDenied, "used already")

	if got, err := r.CheckSignIn(tok); err != nil || got.ID != si.ID {
		t.Fatalf("check: %+v %v", got, err)
	}
	_, err = r.CheckSignIn(si.ID + ".wrong")
	want(t, "a sign-in with a wrong secret", err, ErrDenied, "not valid")

	list, err := r.Do(context.Background(), Request{Op: OpSignInList, User: inv.User})
	if err != nil || len(list.SignIns) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if _, err := r.Do(context.Background(), Request{Op: OpSignInRemove, ID: si.ID}); err != nil {
		t.Fatal(err)
	}
	_, err = r.CheckSignIn(tok)
	want(t, "a removed sign-in", err, ErrDenied, "removed")

	// revoking a user ends all their sign-ins
	_, sec2, _ := r.AddInvite("h1", "member", inv.User, 0)
	_, tok2, _ := r.RedeemInvite(sec2, "phone")
	if n, err := r.RemoveSignInsOf(inv.User); n != 1 || err != nil {
		t.Fatalf("RemoveSignInsOf: %d, %v", n, err)
	}
	_, err = r.CheckSignIn(tok2)
	want(t, "a sign-in of a revoked user", err, ErrDenied, "not valid")

	// an invite past its time is refused
	_, late, _ := r.AddInvite("h1", "viewer", "user:vic", time.Minute)
	now = now.Add(2 * time.Minute)
	_, _, err = r.RedeemInvite(late, "x")
	want(t, "an expired invite", err, ErrDenied, "expired")
}
