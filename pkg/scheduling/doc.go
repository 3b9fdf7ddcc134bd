// Package scheduling is igw's Endpoint Picker framework: it decides which
// model-server endpoint serves a request, for both the standalone gateway
// and the Envoy ext_proc picker.
//
// The shape follows the kube-scheduler framework. A plugin implements only
// the narrow extension points it needs:
//
//   - Filter removes candidates that must not serve the request.
//   - Scorer rates every remaining candidate 0..1; the scheduler multiplies
//     each scorer's output by its configured weight and sums.
//   - Picker turns the weighted totals into an ordered choice: a primary
//     endpoint and fallbacks for retries.
//   - ProfileHandler decides which scheduling profiles run for a request and
//     which profile's choice is primary.
//   - PreRequest and ResponseComplete are hooks around the proxied request
//     (e.g. the prefix-cache scorer records, in PreRequest, which prompt
//     blocks it sent where).
//
// One scheduling cycle works on a consistent snapshot: every candidate's
// *datastore.Metrics and in-flight count are loaded once, before any plugin
// runs, so two scorers never see two different scrapes of one endpoint.
// Work that depends only on the request (the prompt's block hashes) is done
// once per request and kept in the request's CycleState.
//
// Plugins are built by type name from a Registry, normally from an
// EndpointPickerConfig (ParseEndpointPickerConfig, NewScheduler); the
// built-in plugins live under pkg/scheduling/plugins, and
// plugins.NewRegistry returns a registry that knows all of them. Every
// configuration error is reported when the scheduler is built, never on a
// request.
//
// The hot path allocates nothing per endpoint: per-cycle scratch buffers
// come from a per-scheduler sync.Pool.
package scheduling
