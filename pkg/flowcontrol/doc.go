// Package flowcontrol decides whether a request may be dispatched now: it
// detects when a pool's model servers are saturated, so that requests of
// low (negative) priority are shed before they cost GPU time and queue
// behind interactive traffic.
package flowcontrol
