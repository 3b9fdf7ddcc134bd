package v1alpha2_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/igw-dev/igw/api/v1alpha2"
)

// The llm-d.ai CRDs are the seeds' with the group renamed (make generate
// writes them); this keeps them from drifting apart when only one is
// regenerated or edited.
func TestLLMDCRDs_AreTheBasesUnderLLMD(t *testing.T) {
	root := filepath.Join("..", "..", "config", "crd")
	for _, plural := range []string{"inferenceobjectives", "inferencemodelrewrites"} {
		base, err := os.ReadFile(filepath.Join(root, "bases", v1alpha2.GroupName+"_"+plural+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		llmd, err := os.ReadFile(filepath.Join(root, "llm-d", v1alpha2.LLMDGroupVersion.Group+"_"+plural+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ReplaceAll(string(base), v1alpha2.GroupName, v1alpha2.LLMDGroupVersion.Group); string(llmd) != want {
			t.Errorf("config/crd/llm-d/%s_%s.yaml is not config/crd/bases' under llm-d.ai: run make generate", v1alpha2.LLMDGroupVersion.Group, plural)
		}
	}
}
