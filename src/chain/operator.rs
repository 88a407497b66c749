//! An operator's transactions on Livepeer's contracts (`lpgpu protocol …`):
//! becoming an active orchestrator (approve, bond, `transcoder`, service
//! URI), funding a sender's deposit and reserve, initializing the round,
//! and the account's status read back.
//!
//! What would make a transaction revert is checked first, as plain code
//! over values read from the chain ([`activation_refusal`],
//! [`funding_refusal`]), so the operator reads why in words instead of a
//! bare revert. Amounts are parsed by [`parse_units`] (LPT and ETH both
//! have 18 decimals).

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::{DynProvider, Provider};
use serde::Serialize;

use super::ChainError;
use super::livepeer::{Deployment, abi, lookup};

/// Decimals of LPT and ETH.
pub const DECIMALS: u32 = 18;

/// A decimal amount (`"1"`, `"0.25"`) in units of 10^-`decimals`.
pub fn parse_units(text: &str, decimals: u32) -> Result<U256, String> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!fraction.is_empty() && !digits(fraction)) || text.ends_with('.') {
        return Err(format!("{text:?} is not a decimal amount"));
    }
    if fraction.len() > decimals as usize {
        return Err(format!("{text:?} has more than {decimals} decimals"));
    }
    let scale = U256::from(10u64).pow(U256::from(decimals));
    let whole: U256 = whole
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let padded = format!("{fraction:0<width$}", width = decimals as usize);
    let fraction: U256 = padded.parse().unwrap_or(U256::ZERO);
    whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A percentage (`"10"`, `"12.5"`) as the contracts' parts per million.
pub fn percent_to_ppm(text: &str) -> Result<U256, String> {
    let ppm = parse_units(text, 4).map_err(|e| format!("{e} (a percentage)"))?;
    if ppm > U256::from(1_000_000u64) {
        return Err(format!("{text}% is more than 100%"));
    }
    Ok(ppm)
}

/// Where the round stands, and the Controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RoundState {
    pub paused: bool,
    pub current_round: u64,
    pub initialized: bool,
    pub locked: bool,
}

/// Why `activate` would revert, before it is sent.
pub fn activation_refusal(
    round: &RoundState,
    balance: U256,
    already_bonded: U256,
    stake: U256,
) -> Option<String> {
    if round.paused {
        return Some("the protocol is paused (the Controller has not been unpaused)".into());
    }
    if !round.initialized {
        return Some(format!(
            "round {} is not initialized: run `lpgpu protocol round` first",
            round.current_round
        ));
    }
    if round.locked {
        return Some(format!(
            "round {} is in its locked part, when no orchestrator may register: wait for the next round",
            round.current_round
        ));
    }
    if stake > balance {
        return Some(format!(
            "not enough LPT: the stake is {} wei of LPT, the account holds {balance}",
            stake
        ));
    }
    if stake.is_zero() && already_bonded.is_zero() {
        return Some("nothing is bonded: give --stake LPT".into());
    }
    None
}

/// Why `fund` would revert or be pointless, before it is sent.
pub fn funding_refusal(
    paused: bool,
    deposit: U256,
    reserve: U256,
    balance: U256,
) -> Option<String> {
    if paused {
        return Some("the protocol is paused (the Controller has not been unpaused)".into());
    }
    if deposit.is_zero() && reserve.is_zero() {
        return Some("nothing to fund: give --deposit and/or --reserve".into());
    }
    let total = deposit.saturating_add(reserve);
    if total > balance {
        return Some(format!(
            "not enough ETH: funding needs {total} wei, the account holds {balance}"
        ));
    }
    None
}

/// An account as `lpgpu protocol status` prints it (amounts in wei, as
/// decimal strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountStatus {
    pub address: String,
    pub round: RoundState,
    pub eth_balance: String,
    pub lpt_balance: String,
    /// LPT bonded by the account itself.
    pub bonded: String,
    /// The account's stake as an orchestrator (its own and delegated).
    pub stake: String,
    pub registered: bool,
    pub active: bool,
    pub service_uri: String,
    /// As a ticket sender.
    pub deposit: String,
    pub reserve: String,
    pub withdraw_round: u64,
    /// Fees the account can claim up to the current round.
    pub pending_fees: String,
}

fn failed(what: &str) -> impl Fn(alloy::contract::Error) -> ChainError + '_ {
    move |e| ChainError::Unavailable(format!("{what}: {e}"))
}

fn small(value: U256) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Livepeer's contracts found through a Controller, with a provider to call
/// them (a signing one for the transactions).
#[derive(Debug, Clone)]
pub struct Protocol {
    provider: DynProvider,
    pub contracts: Deployment,
}

impl Protocol {
    pub async fn connect(
        provider: DynProvider,
        controller: EthAddress,
    ) -> Result<Self, ChainError> {
        let contracts = lookup(&provider, controller).await?;
        Ok(Self {
            provider,
            contracts,
        })
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    pub async fn round(&self) -> Result<RoundState, ChainError> {
        let controller = abi::Controller::new(self.contracts.controller, &self.provider);
        let rounds = abi::RoundsManager::new(self.contracts.rounds_manager, &self.provider);
        Ok(RoundState {
            paused: controller.paused().call().await.map_err(failed("paused"))?,
            current_round: small(
                rounds
                    .currentRound()
                    .call()
                    .await
                    .map_err(failed("currentRound"))?,
            ),
            initialized: rounds
                .currentRoundInitialized()
                .call()
                .await
                .map_err(failed("currentRoundInitialized"))?,
            locked: rounds
                .currentRoundLocked()
                .call()
                .await
                .map_err(failed("currentRoundLocked"))?,
        })
    }

    /// Initializes the current round; false when it already was.
    pub async fn initialize_round(&self) -> Result<bool, ChainError> {
        let state = self.round().await?;
        if state.paused {
            return Err(ChainError::Invalid(
                "the protocol is paused (the Controller has not been unpaused)".into(),
            ));
        }
        if state.initialized {
            return Ok(false);
        }
        let rounds = abi::RoundsManager::new(self.contracts.rounds_manager, &self.provider);
        confirm("initializeRound", rounds.initializeRound().send()).await?;
        Ok(true)
    }

    /// Approve and bond `stake` to itself (when > 0), register as an
    /// orchestrator with `reward_cut` and `fee_share` (ppm), publish
    /// `service_uri`.
    pub async fn activate(
        &self,
        me: EthAddress,
        stake: U256,
        reward_cut: U256,
        fee_share: U256,
        service_uri: &str,
    ) -> Result<(), ChainError> {
        let round = self.round().await?;
        let token = abi::LivepeerToken::new(self.contracts.token, &self.provider);
        let bonding = abi::BondingManager::new(self.contracts.bonding_manager, &self.provider);
        let balance = token
            .balanceOf(me)
            .call()
            .await
            .map_err(failed("balanceOf"))?;
        let bonded = bonding
            .getDelegator(me)
            .call()
            .await
            .map_err(failed("getDelegator"))?
            .bondedAmount;
        if let Some(why) = activation_refusal(&round, balance, bonded, stake) {
            return Err(ChainError::Invalid(why));
        }
        if !stake.is_zero() {
            confirm(
                "approving the BondingManager",
                token.approve(self.contracts.bonding_manager, stake).send(),
            )
            .await?;
            confirm("bond", bonding.bond(stake, me).send()).await?;
        }
        confirm(
            "transcoder(rewardCut, feeShare)",
            bonding.transcoder(reward_cut, fee_share).send(),
        )
        .await?;
        let registry = abi::ServiceRegistry::new(self.contracts.service_registry, &self.provider);
        confirm(
            "setServiceURI",
            registry.setServiceURI(service_uri.to_string()).send(),
        )
        .await?;
        Ok(())
    }

    /// `fundDepositAndReserve(deposit, reserve)` with their sum as value.
    pub async fn fund(
        &self,
        me: EthAddress,
        deposit: U256,
        reserve: U256,
    ) -> Result<(), ChainError> {
        let round = self.round().await?;
        let balance = self
            .provider
            .get_balance(me)
            .await
            .map_err(|e| ChainError::Unavailable(format!("balance: {e}")))?;
        if let Some(why) = funding_refusal(round.paused, deposit, reserve, balance) {
            return Err(ChainError::Invalid(why));
        }
        let broker = abi::TicketBroker::new(self.contracts.ticket_broker, &self.provider);
        confirm(
            "fundDepositAndReserve",
            broker
                .fundDepositAndReserve(deposit, reserve)
                .value(deposit.saturating_add(reserve))
                .send(),
        )
        .await?;
        Ok(())
    }

    pub async fn status(&self, address: EthAddress) -> Result<AccountStatus, ChainError> {
        let round = self.round().await?;
        let p = &self.provider;
        let token = abi::LivepeerToken::new(self.contracts.token, p);
        let bonding = abi::BondingManager::new(self.contracts.bonding_manager, p);
        let broker = abi::TicketBroker::new(self.contracts.ticket_broker, p);
        let registry = abi::ServiceRegistry::new(self.contracts.service_registry, p);
        let eth = p
            .get_balance(address)
            .await
            .map_err(|e| ChainError::Unavailable(format!("balance: {e}")))?;
        let sender = broker
            .getSenderInfo(address)
            .call()
            .await
            .map_err(failed("getSenderInfo"))?;
        Ok(AccountStatus {
            address: address.to_checksum(None),
            round,
            eth_balance: eth.to_string(),
            lpt_balance: token
                .balanceOf(address)
                .call()
                .await
                .map_err(failed("balanceOf"))?
                .to_string(),
            bonded: bonding
                .getDelegator(address)
                .call()
                .await
                .map_err(failed("getDelegator"))?
                .bondedAmount
                .to_string(),
            stake: bonding
                .transcoderTotalStake(address)
                .call()
                .await
                .map_err(failed("transcoderTotalStake"))?
                .to_string(),
            registered: bonding
                .isRegisteredTranscoder(address)
                .call()
                .await
                .map_err(failed("isRegisteredTranscoder"))?,
            active: bonding
                .isActiveTranscoder(address)
                .call()
                .await
                .map_err(failed("isActiveTranscoder"))?,
            service_uri: registry
                .getServiceURI(address)
                .call()
                .await
                .map_err(failed("getServiceURI"))?,
            deposit: sender.deposit.to_string(),
            reserve: sender.fundsRemaining.to_string(),
            withdraw_round: small(sender.withdrawRound),
            pending_fees: bonding
                .pendingFees(address, U256::from(round.current_round))
                .call()
                .await
                .map_err(failed("pendingFees"))?
                .to_string(),
        })
    }
}

/// Waits for a transaction and refuses a reverted one.
async fn confirm(
    what: &str,
    pending: impl std::future::IntoFuture<
        Output = Result<
            alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
            alloy::contract::Error,
        >,
    >,
) -> Result<(), ChainError> {
    super::livepeer::confirm(what, pending).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wei(lpt: u64) -> U256 {
        U256::from(lpt) * U256::from(10u64).pow(U256::from(18u64))
    }

    #[test]
    fn amounts_parse_as_decimals_of_18_places() {
        assert_eq!(parse_units("1", 18).unwrap(), wei(1));
        assert_eq!(
            parse_units("0.25", 18).unwrap(),
            U256::from(250_000_000_000_000_000u64)
        );
        assert_eq!(parse_units("100", 18).unwrap(), wei(100));
        for bad in ["", ".5", "1.", "-1", "1e3", "one", "0.0000000000000000001"] {
            assert!(parse_units(bad, 18).is_err(), "{bad}");
        }
        assert_eq!(percent_to_ppm("10").unwrap(), U256::from(100_000u64));
        assert_eq!(percent_to_ppm("12.5").unwrap(), U256::from(125_000u64));
        assert!(percent_to_ppm("100.01").is_err());
    }

    #[test]
    fn each_reason_an_activation_would_revert_is_said_first() {
        let ok = RoundState {
            paused: false,
            current_round: 3,
            initialized: true,
            locked: false,
        };
        assert_eq!(activation_refusal(&ok, wei(10), U256::ZERO, wei(5)), None);
        let said = |round: RoundState, balance, stake| {
            activation_refusal(&round, balance, U256::ZERO, stake).unwrap()
        };
        assert!(said(RoundState { paused: true, ..ok }, wei(10), wei(5)).contains("paused"));
        assert!(
            said(
                RoundState {
                    initialized: false,
                    ..ok
                },
                wei(10),
                wei(5)
            )
            .contains("protocol round")
        );
        assert!(said(RoundState { locked: true, ..ok }, wei(10), wei(5)).contains("locked"));
        assert!(said(ok, wei(1), wei(5)).contains("not enough LPT"));
        assert!(said(ok, wei(1), U256::ZERO).contains("--stake"));
        // Already bonded: registering again needs no new stake.
        assert_eq!(
            activation_refusal(&ok, U256::ZERO, wei(5), U256::ZERO),
            None
        );
    }

    #[test]
    fn funding_says_what_is_missing() {
        assert_eq!(funding_refusal(false, wei(1), wei(1), wei(3)), None);
        assert!(
            funding_refusal(true, wei(1), wei(1), wei(3))
                .unwrap()
                .contains("paused")
        );
        assert!(
            funding_refusal(false, U256::ZERO, U256::ZERO, wei(3))
                .unwrap()
                .contains("nothing")
        );
        assert!(
            funding_refusal(false, wei(2), wei(2), wei(3))
                .unwrap()
                .contains("not enough ETH")
        );
    }
}
