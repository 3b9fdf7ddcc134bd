// Package kube is igw's Kubernetes discovery: controller-runtime
// reconcilers that feed the datastore from the API server, so `igw epp`
// follows an InferencePool's pods as they come, go and turn ready, and
// `igw bbr` follows its adapter ConfigMaps.
//
// Every reconciler is level-based (STYLE.md): whatever event woke it, it
// recomputes the whole desired state from the informer cache and hands it to
// the datastore in one call (Store.SetPool, SetObjectives, SetRewrites), so
// a missed or reordered event heals on the next one.
//
//   - Endpoints: the pool's spec.selector (or, without the CRD, a fixed
//     --endpoint-selector) picks pods in the pool's namespace; every pod
//     that is Ready (condition PodReady true), not terminating and has a
//     pod IP contributes one endpoint per target port, "<podIP>:<port>",
//     with the engine from the pod label
//     inference.networking.k8s.io/engine-type (default vllm). A pod that
//     turns unready or is deleted leaves on the reconcile its event causes.
//   - Objectives: every InferenceObjective of the namespace, by poolRef,
//     becomes the pool's objective → priority map.
//   - Rewrites: every InferenceModelRewrite of the namespace, by poolRef,
//     oldest object first, becomes the pool's rewrite rules.
//   - Adapters (igw bbr): every ConfigMap labelled
//     inference.networking.k8s.io/bbr-managed=true (data keys baseModel and
//     adapters) becomes the body-based router's adapter map.
//
// The informer cache is scoped to one namespace, which is all the
// namespaced Role in config/rbac allows. The reconcilers run on every
// replica, leader or not, so a follower's datastore is warm when it takes
// over; leader election (a Lease) only decides which replica reports ready.
package kube
