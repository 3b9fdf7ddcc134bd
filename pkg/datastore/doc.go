// Package datastore is igw's one source of truth at run time: the model
// server endpoints of every pool with their latest metrics snapshot and
// in-flight request counts. Discovery (static configuration or Kubernetes)
// decides which endpoints exist; the model-server scraper refreshes their
// metrics; the scheduler reads them.
//
// Readers never lock: an endpoint's metrics are an immutable *Metrics
// swapped atomically, so a scheduling cycle sees one consistent snapshot per
// endpoint and the scraper never waits for the scheduler.
package datastore
