package agentprefs

// Label is the launchd label of the agent's daemon
// (/Library/LaunchDaemons/com.clearance.agent.plist) and its package's
// identifier. The verifier's login-item profile names it, so that macOS
// keeps the daemon allowed in the background; renaming it leaves every
// Mac's item unmanaged.
const Label = "com.clearance.agent"
