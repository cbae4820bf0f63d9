//! What the VM runs in an inference block: users' transactions (token transfer, contract
//! deploy, contract call), and the operations only the consensus makes (mints of the
//! inference subsidy and of pegged-in FAI, and calls of the boot contracts' consensus-only
//! functions as the boot principal, whose key nobody holds).

use clarity::vm::costs::ExecutionCost;
use clarity::vm::types::Value;

/// A user's transaction, as the VM sees it (signatures and fees are checked by the
/// inference chain before it gets here).
#[derive(Debug, Clone, PartialEq)]
pub struct VmTransaction {
    /// Hash160 of the sender's key.
    pub sender: [u8; 20],
    /// The sender's next nonce.
    pub nonce: u64,
    pub payload: Payload,
}

/// What a transaction does.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Moves `amount` base units of FAI to `to` (hash160), with a memo of at most 34 bytes.
    Transfer {
        to: [u8; 20],
        amount: u128,
        memo: Vec<u8>,
    },
    /// Deploys a Clarity 2 contract named `name` under the sender's principal.
    Deploy { name: String, source: String },
    /// Calls public function `function` of contract `name` deployed by `issuer`.
    Call {
        issuer: [u8; 20],
        name: String,
        function: String,
        args: Vec<Value>,
    },
}

/// One operation of a block, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockOp {
    /// A user's transaction.
    Tx(VmTransaction),
    /// New FAI for `to`: the inference subsidy or a peg-in (consensus only).
    Mint { to: [u8; 20], amount: u128 },
    /// FAI moved by the consensus (escrow of inference fees and their settlement).
    Move {
        from: [u8; 20],
        to: [u8; 20],
        amount: u128,
    },
    /// The escrow of an inference transaction's max fee: a move that spends the sender's
    /// next nonce, so the same inference cannot be charged twice.
    Escrow {
        from: [u8; 20],
        to: [u8; 20],
        amount: u128,
        nonce: u64,
    },
    /// Evidence a user reported, which the consensus checked: spends the reporter's next
    /// nonce (so a report is carried once) and calls a boot contract's function as the
    /// boot principal. A call that returns an error (the evidence was already used)
    /// still spends the nonce; a runtime failure or a wrong nonce fails the operation
    /// (and so the block).
    Report {
        reporter: [u8; 20],
        nonce: u64,
        contract: String,
        function: String,
        args: Vec<Value>,
    },
    /// A boot contract's function called by the consensus, as the boot principal.
    System {
        contract: String,
        function: String,
        args: Vec<Value>,
    },
}

/// Something a transaction caused.
#[derive(Debug, Clone, PartialEq)]
pub enum VmEvent {
    /// `print` in a contract.
    Print {
        contract: String,
        value: Value,
    },
    Transfer {
        from: String,
        to: String,
        amount: u128,
    },
    Mint {
        to: String,
        amount: u128,
    },
    Burn {
        from: String,
        amount: u128,
    },
    /// Token and NFT events, as the VM describes them.
    Other(String),
}

/// The outcome of an operation that ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// The value returned: `(ok ..)` or `(err ..)` for calls, `(ok true)` otherwise.
    pub result: Value,
    /// False when the function returned `(err ..)`: its writes were rolled back, but the
    /// transaction is in the block and its nonce is spent.
    pub committed: bool,
    pub events: Vec<VmEvent>,
    pub cost: ExecutionCost,
}
