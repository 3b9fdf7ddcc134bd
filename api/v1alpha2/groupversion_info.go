package v1alpha2

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GroupName is the API group of the types in this package.
const GroupName = "inference.networking.x-k8s.io"

// GroupVersion identifies this package's types in a runtime.Scheme and in
// the apiVersion field of manifests
// ("inference.networking.x-k8s.io/v1alpha2").
var GroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha2"}

// LLMDGroupVersion is where the reference picker's project (llm-d) serves
// the same kinds with the same schema (REFERENCE.md §8): igw accepts
// manifests of either group. The Go types are this package's; objects of
// that group are read as unstructured and converted (one Go type cannot be
// registered under two groups in a scheme without making typed clients
// ambiguous). Its CRDs are config/crd/llm-d.
var LLMDGroupVersion = schema.GroupVersion{Group: "llm-d.ai", Version: "v1alpha2"}

// SchemeBuilder collects the functions that register this package's types;
// it is the one package-level registry, following the apimachinery idiom so
// that clients can compose schemes without an init() side effect.
var SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

// AddToScheme registers this package's types with a scheme.
var AddToScheme = SchemeBuilder.AddToScheme

// Resource qualifies a resource name (e.g. "inferenceobjectives") with this
// package's group, as RBAC and error messages expect.
func Resource(resource string) schema.GroupResource {
	return GroupVersion.WithResource(resource).GroupResource()
}

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&InferenceObjective{}, &InferenceObjectiveList{},
		&InferenceModelRewrite{}, &InferenceModelRewriteList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
