// Package llmtest holds the conformance suite every llm.Provider must pass.
// A provider's tests run it against the scripted fake server of package
// fakellm, describing in a Harness only what differs between protocols:
//
//	func TestProvider(t *testing.T) {
//		llmtest.ProviderSuite(t, llmtest.Harness{
//			New:       func(t *testing.T, fake *fakellm.Server) llm.Provider { ... },
//			ChatModel: "llama3.2:1b", ChatPath: "/api/chat", ...
//		})
//	}
//
// Tests of what only one protocol does stay in that provider's package.
//
// It is imported only from _test.go files.
package llmtest
