//! Livepeer's own protocol contracts, as the npm package
//! `@livepeer/sdk@1.0.1-alpha.10` ships them compiled (livepeer/protocol
//! `c6733bb`, Feb 2022: today's ticket hash, signature and win check):
//! deploying them on a development chain (`lpgpu chain init --livepeer`)
//! and finding them again through their Controller (`eth:URL?controller=0x…`).
//!
//! Nothing is compiled: the artifacts' creation code is sent as it ships,
//! with the SortedDoublyLL library's address linked into BondingManager. The
//! package is a dependency of `contracts/` (installed by `.ci/setup`) and is
//! read at run time, never committed. The deployment follows
//! `../shared/notes/livepeer-artifacts.md` ("direct mode"): contracts
//! registered under their plain names, TicketBroker also as `JobsManager`
//! (the Minter takes ETH only from it), a `GenericMock` standing in for the
//! `L2LPTDataCache` the Minter reads at every round, the parameters of
//! Livepeer's own deploy configuration, then `unpause()`.

use std::path::{Path, PathBuf};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address as EthAddress, Bytes, FixedBytes, U256, keccak256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolValue;

use super::ChainError;

/// Where `.ci/setup` installs the package's artifacts, from the project root.
pub const DEFAULT_ARTIFACTS: &str = "contracts/node_modules/@livepeer/sdk/abis";
/// The environment variable that names another artifacts directory.
pub const ARTIFACTS_ENV: &str = "LPGPU_LIVEPEER_ABIS";

/// Development LPT minted to the deployer, in LPT (18 decimals).
pub const DEV_LPT: u64 = 10_000;

/// The ABI lpgpu calls, written from the artifacts' own ABI (the same
/// selectors; checked by the tests against the deployed code).
pub mod abi {
    alloy::sol! {
        #[sol(rpc)]
        interface Controller {
            function setContractInfo(bytes32 id, address contractAddress, bytes20 gitCommitHash) external;
            function getContract(bytes32 id) external view returns (address);
            function unpause() external;
            function paused() external view returns (bool);
            function owner() external view returns (address);
        }

        #[sol(rpc)]
        interface LivepeerToken {
            function grantRole(bytes32 role, address account) external;
            function mint(address to, uint256 amount) external;
            function balanceOf(address account) external view returns (uint256);
            function approve(address spender, uint256 amount) external returns (bool);
            function allowance(address owner, address spender) external view returns (uint256);
        }

        #[sol(rpc)]
        interface BondingManager {
            function setUnbondingPeriod(uint64 unbondingPeriod) external;
            function setNumActiveTranscoders(uint256 numActiveTranscoders) external;
            function bond(uint256 amount, address to) external;
            function transcoder(uint256 rewardCut, uint256 feeShare) external;
            function isActiveTranscoder(address transcoder) external view returns (bool);
            function isRegisteredTranscoder(address transcoder) external view returns (bool);
            function transcoderTotalStake(address transcoder) external view returns (uint256);
            function getTranscoderPoolSize() external view returns (uint256);
            function pendingFees(address delegator, uint256 endRound) external view returns (uint256);
            function getDelegator(address delegator) external view returns (
                uint256 bondedAmount, uint256 fees, address delegateAddress, uint256 delegatedAmount,
                uint256 startRound, uint256 lastClaimRound, uint256 nextUnbondingLockId);
        }

        #[sol(rpc)]
        interface RoundsManager {
            function setRoundLength(uint256 roundLength) external;
            function setRoundLockAmount(uint256 roundLockAmount) external;
            function roundLength() external view returns (uint256);
            function currentRound() external view returns (uint256);
            function currentRoundInitialized() external view returns (bool);
            function currentRoundLocked() external view returns (bool);
            function lastInitializedRound() external view returns (uint256);
            function blockHashForRound(uint256 round) external view returns (bytes32);
            function initializeRound() external;
        }

        #[sol(rpc)]
        interface ServiceRegistry {
            function setServiceURI(string serviceURI) external;
            function getServiceURI(address addr) external view returns (string);
        }

        #[sol(rpc)]
        interface TicketBroker {
            struct Ticket {
                address recipient;
                address sender;
                uint256 faceValue;
                uint256 winProb;
                uint256 senderNonce;
                bytes32 recipientRandHash;
                bytes auxData;
            }
            function setUnlockPeriod(uint256 unlockPeriod) external;
            function setTicketValidityPeriod(uint256 ticketValidityPeriod) external;
            function ticketValidityPeriod() external view returns (uint256);
            function getTicketHash(Ticket memory ticket) external pure returns (bytes32);
            function fundDepositAndReserve(uint256 depositAmount, uint256 reserveAmount) external payable;
            function getSenderInfo(address sender) external view returns (
                uint256 deposit, uint256 withdrawRound, uint256 fundsRemaining, uint256 claimedInCurrentRound);
            function usedTickets(bytes32 ticketHash) external view returns (bool);
            function redeemWinningTicket(Ticket memory ticket, bytes memory sig, uint256 recipientRand) external;
        }
    }
}

/// The contract id a Controller keys a name by.
pub fn contract_id(name: &str) -> FixedBytes<32> {
    keccak256(name.as_bytes())
}

/// One artifact's creation code, hex as shipped (library placeholders
/// included), and where the SortedDoublyLL library goes in it.
#[derive(Debug, Clone)]
struct Artifact {
    name: &'static str,
    bytecode_hex: String,
    library_offsets: Vec<usize>,
}

impl Artifact {
    fn load(dir: &Path, name: &'static str, path: &str) -> Result<Self, ChainError> {
        let file = dir.join(path);
        let invalid = |why: String| ChainError::Invalid(format!("{}: {why}", file.display()));
        let text = std::fs::read(&file).map_err(|e| {
            ChainError::Invalid(format!(
                "Livepeer's artifact {} is not readable ({e}): install them with .ci/setup \
                 (npm ci in contracts/), or name their abis/ directory with --livepeer-abis \
                 or {ARTIFACTS_ENV}",
                file.display()
            ))
        })?;
        let json: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        let bytecode_hex = json["bytecode"]
            .as_str()
            .and_then(|b| b.strip_prefix("0x"))
            .filter(|b| !b.is_empty())
            .ok_or_else(|| invalid("no creation bytecode".into()))?
            .to_string();
        let mut library_offsets = Vec::new();
        if let Some(files) = json["linkReferences"].as_object() {
            for (source, libraries) in files {
                for (library, places) in libraries.as_object().into_iter().flatten() {
                    if library != "SortedDoublyLL" {
                        return Err(invalid(format!(
                            "links {source}:{library}, which lpgpu does not deploy"
                        )));
                    }
                    for place in places.as_array().into_iter().flatten() {
                        let start = place["start"]
                            .as_u64()
                            .ok_or_else(|| invalid("a link reference without a start".into()))?;
                        library_offsets.push(start as usize);
                    }
                }
            }
        }
        Ok(Self {
            name,
            bytecode_hex,
            library_offsets,
        })
    }

    /// The creation code with `library` linked in wherever it is referenced.
    fn linked(&self, library: Option<EthAddress>) -> Result<Vec<u8>, ChainError> {
        let mut hex_code = self.bytecode_hex.clone();
        if !self.library_offsets.is_empty() {
            let library = library.ok_or_else(|| {
                ChainError::Invalid(format!("{} needs its library deployed first", self.name))
            })?;
            let address = hex::encode(library.as_slice());
            for &offset in &self.library_offsets {
                let at = offset * 2;
                if hex_code
                    .get(at..at + 40)
                    .is_none_or(|p| !p.starts_with("__"))
                {
                    return Err(ChainError::Invalid(format!(
                        "{}: no library placeholder at byte {offset}",
                        self.name
                    )));
                }
                hex_code.replace_range(at..at + 40, &address);
            }
        }
        if hex_code.contains("__") {
            return Err(ChainError::Invalid(format!(
                "{}: an unlinked library placeholder is left",
                self.name
            )));
        }
        hex::decode(&hex_code)
            .map_err(|e| ChainError::Invalid(format!("{}: bytecode is not hex: {e}", self.name)))
    }
}

/// The artifacts a deployment needs, read from the package's `abis/`.
#[derive(Debug, Clone)]
pub struct Artifacts {
    controller: Artifact,
    minter: Artifact,
    token: Artifact,
    ticket_broker: Artifact,
    sorted_doubly_ll: Artifact,
    bonding_manager: Artifact,
    rounds_manager: Artifact,
    generic_mock: Artifact,
    service_registry: Artifact,
}

impl Artifacts {
    /// `dir`, else `$LPGPU_LIVEPEER_ABIS`, else [`DEFAULT_ARTIFACTS`].
    pub fn directory(dir: Option<&Path>) -> PathBuf {
        dir.map(Path::to_path_buf)
            .or_else(|| std::env::var_os(ARTIFACTS_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ARTIFACTS))
    }

    pub fn load(dir: &Path) -> Result<Self, ChainError> {
        Ok(Self {
            controller: Artifact::load(dir, "Controller", "Controller.sol/Controller.json")?,
            minter: Artifact::load(dir, "Minter", "token/Minter.sol/Minter.json")?,
            token: Artifact::load(
                dir,
                "LivepeerToken",
                "token/LivepeerToken.sol/LivepeerToken.json",
            )?,
            ticket_broker: Artifact::load(
                dir,
                "TicketBroker",
                "pm/TicketBroker.sol/TicketBroker.json",
            )?,
            sorted_doubly_ll: Artifact::load(
                dir,
                "SortedDoublyLL",
                "libraries/SortedDoublyLL.sol/SortedDoublyLL.json",
            )?,
            // The package ships two BondingManager builds under one ABI; this
            // is the one with the null-delegate fix deployed at c6733bb.
            bonding_manager: Artifact::load(
                dir,
                "BondingManager",
                "contracts/bonding/BondingManager.sol/BondingManager.json",
            )?,
            rounds_manager: Artifact::load(
                dir,
                "RoundsManager",
                "rounds/RoundsManager.sol/RoundsManager.json",
            )?,
            generic_mock: Artifact::load(
                dir,
                "L2LPTDataCache (GenericMock)",
                "test/mocks/GenericMock.sol/GenericMock.json",
            )?,
            service_registry: Artifact::load(
                dir,
                "ServiceRegistry",
                "ServiceRegistry.sol/ServiceRegistry.json",
            )?,
        })
    }
}

/// The protocol parameters a development chain gets: Livepeer's deploy
/// configuration (`deploy/migrations.config.ts`) and its Arbitrum values
/// for the ticket broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevParameters {
    /// Blocks per round.
    pub round_length: u64,
    /// The locked tail of a round, in parts per million.
    pub round_lock_amount: u64,
    pub unbonding_period: u64,
    pub active_transcoders: u64,
    /// Rounds a sender's unlock takes.
    pub unlock_period: u64,
    /// Rounds a ticket stays redeemable.
    pub ticket_validity_period: u64,
    /// Minter: inflation, its change, the target bonding rate (10⁹ scale).
    pub inflation: u64,
    pub inflation_change: u64,
    pub target_bonding_rate: u64,
}

impl Default for DevParameters {
    fn default() -> Self {
        Self {
            round_length: 50,
            round_lock_amount: 100_000,
            unbonding_period: 7,
            active_transcoders: 10,
            unlock_period: 2,
            ticket_validity_period: 2,
            inflation: 137,
            inflation_change: 3,
            target_bonding_rate: 500_000,
        }
    }
}

/// Where a deployment put each contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment {
    pub controller: EthAddress,
    pub minter: EthAddress,
    pub token: EthAddress,
    pub ticket_broker: EthAddress,
    pub bonding_manager: EthAddress,
    pub rounds_manager: EthAddress,
    pub service_registry: EthAddress,
}

/// Waits for a transaction and refuses a reverted one.
pub(super) async fn confirm(
    what: &str,
    pending: impl std::future::IntoFuture<
        Output = Result<
            alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
            alloy::contract::Error,
        >,
    >,
) -> Result<alloy::rpc::types::TransactionReceipt, ChainError> {
    let pending = pending
        .await
        .map_err(|e| ChainError::Unavailable(format!("{what}: {e}")))?;
    let receipt = pending
        .get_receipt()
        .await
        .map_err(|e| ChainError::Unavailable(format!("{what}: {e}")))?;
    if !receipt.status() {
        return Err(ChainError::Invalid(format!(
            "{what}: the transaction {} reverted",
            receipt.transaction_hash
        )));
    }
    Ok(receipt)
}

/// Sends one creation transaction; the new contract's address.
async fn create(
    provider: &DynProvider,
    artifact: &Artifact,
    library: Option<EthAddress>,
    constructor_args: Vec<u8>,
) -> Result<EthAddress, ChainError> {
    let mut code = artifact.linked(library)?;
    code.extend_from_slice(&constructor_args);
    let request = TransactionRequest::default().with_deploy_code(Bytes::from(code));
    let what = format!("deploying {}", artifact.name);
    let pending = provider
        .send_transaction(request)
        .await
        .map_err(|e| ChainError::Unavailable(format!("{what}: {e}")))?;
    let receipt = pending
        .get_receipt()
        .await
        .map_err(|e| ChainError::Unavailable(format!("{what}: {e}")))?;
    if !receipt.status() {
        return Err(ChainError::Invalid(format!("{what}: reverted")));
    }
    receipt
        .contract_address
        .ok_or_else(|| ChainError::Invalid(format!("{what}: no contract address")))
}

/// Deploys, registers and configures Livepeer's contracts from `deployer`'s
/// account (the `provider`'s wallet), mints [`DEV_LPT`] to it, and unpauses
/// the Controller.
pub async fn deploy(
    provider: &DynProvider,
    deployer: EthAddress,
    artifacts: &Artifacts,
    parameters: DevParameters,
) -> Result<Deployment, ChainError> {
    let p = parameters;
    let controller = create(provider, &artifacts.controller, None, Vec::new()).await?;
    let registry = abi::Controller::new(controller, provider.clone());
    let register = |name: &'static str, address: EthAddress| {
        let registry = registry.clone();
        async move {
            confirm(
                &format!("registering {name}"),
                registry
                    .setContractInfo(contract_id(name), address, FixedBytes::ZERO)
                    .send(),
            )
            .await
        }
    };
    let minter = create(
        provider,
        &artifacts.minter,
        None,
        (
            controller,
            U256::from(p.inflation),
            U256::from(p.inflation_change),
            U256::from(p.target_bonding_rate),
        )
            .abi_encode_params(),
    )
    .await?;
    register("Minter", minter).await?;
    let token = create(provider, &artifacts.token, None, Vec::new()).await?;
    register("LivepeerToken", token).await?;
    let ticket_broker = create(
        provider,
        &artifacts.ticket_broker,
        None,
        controller.abi_encode(),
    )
    .await?;
    register("TicketBroker", ticket_broker).await?;
    register("JobsManager", ticket_broker).await?;
    let library = create(provider, &artifacts.sorted_doubly_ll, None, Vec::new()).await?;
    let bonding_manager = create(
        provider,
        &artifacts.bonding_manager,
        Some(library),
        controller.abi_encode(),
    )
    .await?;
    register("BondingManager", bonding_manager).await?;
    let rounds_manager = create(
        provider,
        &artifacts.rounds_manager,
        None,
        controller.abi_encode(),
    )
    .await?;
    register("RoundsManager", rounds_manager).await?;
    let data_cache = create(provider, &artifacts.generic_mock, None, Vec::new()).await?;
    register("L2LPTDataCache", data_cache).await?;
    // Where orchestrators publish their service URI (go-livepeer looks it
    // up at start, and broadcasters find orchestrators through it).
    let service_registry = create(
        provider,
        &artifacts.service_registry,
        None,
        controller.abi_encode(),
    )
    .await?;
    register("ServiceRegistry", service_registry).await?;

    let bonding = abi::BondingManager::new(bonding_manager, provider.clone());
    confirm(
        "setUnbondingPeriod",
        bonding.setUnbondingPeriod(p.unbonding_period).send(),
    )
    .await?;
    confirm(
        "setNumActiveTranscoders",
        bonding
            .setNumActiveTranscoders(U256::from(p.active_transcoders))
            .send(),
    )
    .await?;
    let rounds = abi::RoundsManager::new(rounds_manager, provider.clone());
    confirm(
        "setRoundLength",
        rounds.setRoundLength(U256::from(p.round_length)).send(),
    )
    .await?;
    confirm(
        "setRoundLockAmount",
        rounds
            .setRoundLockAmount(U256::from(p.round_lock_amount))
            .send(),
    )
    .await?;
    let broker = abi::TicketBroker::new(ticket_broker, provider.clone());
    confirm(
        "setUnlockPeriod",
        broker.setUnlockPeriod(U256::from(p.unlock_period)).send(),
    )
    .await?;
    confirm(
        "setTicketValidityPeriod",
        broker
            .setTicketValidityPeriod(U256::from(p.ticket_validity_period))
            .send(),
    )
    .await?;
    let lpt = abi::LivepeerToken::new(token, provider.clone());
    let minter_role = keccak256(b"MINTER_ROLE");
    confirm(
        "granting the deployer MINTER_ROLE",
        lpt.grantRole(minter_role, deployer).send(),
    )
    .await?;
    confirm(
        "minting development LPT",
        lpt.mint(
            deployer,
            U256::from(DEV_LPT) * U256::from(10u64).pow(U256::from(18u64)),
        )
        .send(),
    )
    .await?;
    // Only the Minter's reward() needs it.
    confirm(
        "granting the Minter MINTER_ROLE",
        lpt.grantRole(minter_role, minter).send(),
    )
    .await?;
    confirm("unpausing the Controller", registry.unpause().send()).await?;
    Ok(Deployment {
        controller,
        minter,
        token,
        ticket_broker,
        bonding_manager,
        rounds_manager,
        service_registry,
    })
}

/// The contracts a Controller names; a name it does not know is an error
/// that says which.
pub async fn lookup(
    provider: &DynProvider,
    controller: EthAddress,
) -> Result<Deployment, ChainError> {
    let registry = abi::Controller::new(controller, provider.clone());
    let find = |name: &'static str| {
        let registry = registry.clone();
        async move {
            let address = registry
                .getContract(contract_id(name))
                .call()
                .await
                .map_err(|e| {
                    ChainError::Unavailable(format!("Controller.getContract({name}): {e}"))
                })?;
            if address == EthAddress::ZERO {
                return Err(ChainError::Invalid(format!(
                    "the Controller at {controller} has no {name} registered"
                )));
            }
            Ok(address)
        }
    };
    Ok(Deployment {
        controller,
        minter: find("Minter").await?,
        token: find("LivepeerToken").await?,
        ticket_broker: find("TicketBroker").await?,
        bonding_manager: find("BondingManager").await?,
        rounds_manager: find("RoundsManager").await?,
        service_registry: find("ServiceRegistry").await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(hex_code: &str, offsets: Vec<usize>) -> Artifact {
        Artifact {
            name: "test",
            bytecode_hex: hex_code.to_string(),
            library_offsets: offsets,
        }
    }

    #[test]
    fn a_library_is_linked_at_each_reference_and_nowhere_else() {
        let placeholder = format!("__${}$__", "d".repeat(34));
        assert_eq!(placeholder.len(), 40);
        let code = format!("6080{placeholder}00{placeholder}");
        let library = EthAddress::repeat_byte(0xab);
        let linked = artifact(&code, vec![2, 23]).linked(Some(library)).unwrap();
        assert_eq!(linked.len(), 2 + 20 + 1 + 20);
        assert_eq!(&linked[2..22], library.as_slice());
        assert_eq!(&linked[23..43], library.as_slice());
        // A reference that misses its placeholder, or one left over.
        assert!(artifact(&code, vec![3, 23]).linked(Some(library)).is_err());
        assert!(artifact(&code, vec![2]).linked(Some(library)).is_err());
        assert!(artifact(&code, vec![2, 23]).linked(None).is_err());
        assert_eq!(artifact("6080", vec![]).linked(None).unwrap(), [0x60, 0x80]);
    }

    #[test]
    fn ids_are_the_keccak_of_the_name() {
        assert_eq!(
            contract_id("TicketBroker"),
            keccak256("TicketBroker".as_bytes())
        );
    }
}
