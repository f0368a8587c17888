// Package core holds stepwise's domain: the chain language (decoding, aliases,
// validation), the typed values that flow between tasks, the Execution and Step
// records, the ports the engine drives (ExecutionStore, LLM, Tools, Observer)
// and the Engine itself, which runs one task per step and commits the
// execution state and the step record after every step.
//
// core never imports infra, functions, the AWS SDK or aws-lambda-go; adapters
// implement its ports. Packages below core (core/llm, core/hooks, ...) import
// core, never the other way round, which is why the provider-neutral LLM
// request and response types live here: the engine consumes them.
package core
