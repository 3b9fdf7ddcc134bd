package datastore

import (
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// AdapterMap tells the body-based router which requested models are LoRA
// adapters and which base model serves each, so an HTTPRoute can match on
// X-Gateway-Base-Model-Name and send every adapter of a base model to that
// base model's pool. It is immutable; a reload builds a new one.
//
// The file is a YAML list with the data keys of the Kubernetes ConfigMaps
// labelled inference.networking.k8s.io/bbr-managed=true, one entry per
// base model:
//
//	# adapters.yaml
//	- baseModel: meta-llama/Llama-3.1-8B-Instruct
//	  adapters:
//	  - food-review
//	  - sql-lora
//	- baseModel: Qwen/Qwen2.5-7B-Instruct
//	  adapters: [support-bot]
//
// Unknown keys, an empty baseModel, an adapter named twice (or named like
// a base model) are errors.
type AdapterMap struct {
	base map[string]string // adapter or base model → base model
}

// AdapterEntry is one base model and its adapters, as written in the file.
type AdapterEntry struct {
	BaseModel string   `json:"baseModel"`
	Adapters  []string `json:"adapters"`
}

// NewAdapterMap validates entries and builds the map.
func NewAdapterMap(entries []AdapterEntry) (*AdapterMap, error) {
	m := &AdapterMap{base: map[string]string{}}
	isBase := map[string]bool{}
	for i, e := range entries {
		if strings.TrimSpace(e.BaseModel) == "" {
			return nil, fmt.Errorf("[%d].baseModel: required", i)
		}
		if isBase[e.BaseModel] {
			return nil, fmt.Errorf("[%d].baseModel: %q is listed twice", i, e.BaseModel)
		}
		isBase[e.BaseModel] = true
	}
	for i, e := range entries {
		m.base[e.BaseModel] = e.BaseModel
		for j, a := range e.Adapters {
			switch {
			case strings.TrimSpace(a) == "":
				return nil, fmt.Errorf("[%d].adapters[%d]: empty adapter name", i, j)
			case isBase[a]:
				return nil, fmt.Errorf("[%d].adapters[%d]: %q is also a baseModel", i, j, a)
			case m.base[a] != "":
				return nil, fmt.Errorf("[%d].adapters[%d]: adapter %q is already mapped to %q", i, j, a, m.base[a])
			}
			m.base[a] = e.BaseModel
		}
	}
	return m, nil
}

// ParseAdapterMap reads the YAML format above; name prefixes errors.
func ParseAdapterMap(name string, data []byte) (*AdapterMap, error) {
	var entries []AdapterEntry
	if err := yaml.UnmarshalStrict(data, &entries); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m, err := NewAdapterMap(entries)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// LoadAdapterMap reads an adapter map file.
func LoadAdapterMap(path string) (*AdapterMap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("adapter map: %w", err)
	}
	return ParseAdapterMap(path, data)
}

// BaseModel returns the base model of model: its base when it is a listed
// adapter, itself when it is a listed base model, and false when the map
// does not know it.
func (m *AdapterMap) BaseModel(model string) (string, bool) {
	if m == nil {
		return "", false
	}
	b, ok := m.base[model]
	return b, ok
}
