package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/igw-dev/igw/pkg/sim"
)

func newSimCommand() *cobra.Command {
	cfg := sim.DefaultConfig()
	var configFile string
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Serve simulated vLLM-compatible model servers",
		Long: `sim serves OpenAI-compatible model servers that behave like vLLM under load:
continuous batching with chunked prefill, a finite paged KV cache with
automatic prefix caching, LoRA slots, queueing and preemption, with a step-time
model calibrated to Llama-3.1-8B on one H100 (docs/sim.md). --replicas N runs N
independent servers on consecutive ports.`,
		Example: `  igw sim --replicas 3 --port 8001 --model m
  igw sim --max-num-seqs 4 --time-scale 10
  igw sim --config sim.yaml --port 9000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				// The file is the base; flags given on the command line win.
				fileCfg := sim.DefaultConfig()
				if err := sim.LoadConfigFile(configFile, &fileCfg); err != nil {
					return err
				}
				if err := overlayFlags(cmd.Flags(), &fileCfg); err != nil {
					return fmt.Errorf("sim flags: %w", err)
				}
				cfg = fileCfg
			}
			return runSim(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML file with the same settings (keys are the flag names); flags override it")
	bindSimFlags(cmd.Flags(), &cfg)
	return cmd
}

// bindSimFlags binds every simulator setting to a flag. It is the one
// place flags are defined, used both for the command line and to overlay
// command-line values onto a config file.
func bindSimFlags(f *pflag.FlagSet, cfg *sim.Config) {
	f.StringVar(&cfg.Address, "address", cfg.Address, "address to listen on")
	f.IntVar(&cfg.Port, "port", cfg.Port, "port of the first replica; replica i listens on port+i")
	f.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "number of independent servers")
	f.StringVar(&cfg.Model, "model", cfg.Model, "model name")
	f.StringVar(&cfg.ServedModelName, "served-model-name", cfg.ServedModelName, "name clients use (default: --model)")
	f.StringVar(&cfg.Engine, "engine", cfg.Engine, "engine to impersonate in /metrics: vllm or sglang")
	f.IntVar(&cfg.MaxNumSeqs, "max-num-seqs", cfg.MaxNumSeqs, "maximum sequences in a batch")
	f.IntVar(&cfg.MaxNumBatchedTokens, "max-num-batched-tokens", cfg.MaxNumBatchedTokens, "token budget of one step")
	f.IntVar(&cfg.KVCacheBlocks, "kv-cache-blocks", cfg.KVCacheBlocks, "KV cache capacity in blocks")
	f.IntVar(&cfg.BlockSize, "block-size", cfg.BlockSize, "tokens per KV block")
	f.IntVar(&cfg.MaxModelLen, "max-model-len", cfg.MaxModelLen, "maximum prompt plus output tokens")
	f.StringSliceVar(&cfg.LoRAModules, "lora-modules", cfg.LoRAModules, "LoRA adapters served from the start (name or name=path, comma-separated)")
	f.IntVar(&cfg.MaxLoRAs, "max-loras", cfg.MaxLoRAs, "LoRA adapters active in one step")
	f.DurationVar(&cfg.LoRALoadDelay.Duration, "lora-load-delay", cfg.LoRALoadDelay.Duration, "time to swap an adapter into a GPU slot")
	f.Float64Var(&cfg.TimeScale, "time-scale", cfg.TimeScale, "divide every simulated duration by this")
	f.Int64Var(&cfg.Seed, "seed", cfg.Seed, "seed of output lengths, text and fault injection")
	f.Float64Var(&cfg.FailureRate, "failure-rate", cfg.FailureRate, "fraction of requests answered with --failure-status")
	f.IntVar(&cfg.FailureStatus, "failure-status", cfg.FailureStatus, "HTTP status of injected failures")
	f.IntVar(&cfg.KVFullStatus, "kv-full-status", cfg.KVFullStatus, "answer a request the KV cache cannot admit now with this HTTP status instead of queueing it, as some engines do (0: queue, as vLLM does)")
	f.Var(kvEventsFlag{&cfg.KVEvents}, "kv-events-config", `vLLM's KV-cache events config as JSON, e.g. '{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557"}'; replica i publishes on port+i`)
	f.StringVar(&cfg.Tokenizer, "tokenizer", cfg.Tokenizer, "directory with the model's tokenizer.json and tokenizer_config.json (Hugging Face layout): prompts are tokenized and chat-templated with them, as igw's precise-prefix-cache-scorer does")
	f.DurationVar(&cfg.StartupDelay.Duration, "startup-delay", cfg.StartupDelay.Duration, "time /health reports 503 after start")
	f.DurationVar(&cfg.Perf.StepFloor.Duration, "step-floor", cfg.Perf.StepFloor.Duration, "fixed cost of one engine step")
	f.Float64Var(&cfg.Perf.PrefillTokensPerSecond, "prefill-tokens-per-second", cfg.Perf.PrefillTokensPerSecond, "prefill throughput")
	f.DurationVar(&cfg.Perf.ContextTokenCost.Duration, "context-token-cost", cfg.Perf.ContextTokenCost.Duration, "step cost per resident context token")
	f.DurationVar(&cfg.Perf.DecodeSeqCost.Duration, "decode-seq-cost", cfg.Perf.DecodeSeqCost.Duration, "step cost per decoding sequence")
	f.IntVar(&cfg.Perf.MeanOutputTokens, "mean-output-tokens", cfg.Perf.MeanOutputTokens, "median output length when ignore_eos is not set")
}

// kvEventsFlag reads vLLM's --kv-events-config JSON into a config.
type kvEventsFlag struct{ cfg **sim.KVEventsConfig }

func (f kvEventsFlag) String() string {
	if f.cfg == nil || *f.cfg == nil {
		return ""
	}
	b, err := json.Marshal(*f.cfg)
	if err != nil {
		return ""
	}
	return string(b)
}

func (f kvEventsFlag) Set(s string) error {
	k, err := sim.ParseKVEventsConfig(s)
	if err != nil {
		return err
	}
	*f.cfg = k
	return nil
}

func (kvEventsFlag) Type() string { return "json" }

// overlayFlags copies every flag set on the command line onto cfg.
func overlayFlags(cmdline *pflag.FlagSet, cfg *sim.Config) error {
	dst := pflag.NewFlagSet("overlay", pflag.ContinueOnError)
	bindSimFlags(dst, cfg)
	var err error
	cmdline.Visit(func(f *pflag.Flag) {
		target := dst.Lookup(f.Name)
		if target == nil || err != nil {
			return // not a simulator setting (e.g. --config)
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			err = target.Value.(pflag.SliceValue).Replace(sv.GetSlice())
			return
		}
		err = target.Value.Set(f.Value.String())
	})
	return err
}

func runSim(ctx context.Context, cfg sim.Config) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	fleet, err := sim.StartFleet(cfg, log)
	if err != nil {
		return err
	}
	for i, a := range fleet.Addrs() {
		fmt.Printf("serving %s on http://%s\n", cfg.ServedName(), a)
		if kv := fleet.Servers()[i].KVEventsAddr(); kv != "" {
			fmt.Printf("publishing KV-cache events of http://%s on %s\n", a, kv)
		}
	}
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return fleet.Close(shutdown)
}
