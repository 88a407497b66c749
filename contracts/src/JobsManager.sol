// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// lpgpu's development jobs manager. `getJob(uint256)` keeps exactly the read
/// layout of Livepeer's 2018 JobsManager, so lpgpu reads either contract.
///
/// Livepeer's own `job(...)` did not take a transcoder: the BondingManager
/// elected one from the active set at the job's creation round. There is no
/// bonding here, so `createJob` names the transcoder explicitly; deposits,
/// claims, verification and fees are left out.
contract JobsManager {
    struct Job {
        string streamId;
        string transcodingOptions;
        uint256 maxPricePerSegment;
        address broadcasterAddress;
        address transcoderAddress;
        uint256 creationRound;
        uint256 creationBlock;
        uint256 endBlock;
    }

    uint256 public numJobs;
    mapping(uint256 => Job) private jobs;

    /// Livepeer's event, so the job id can be read from the receipt.
    event NewJob(
        address indexed broadcaster,
        uint256 jobId,
        string streamId,
        string transcodingOptions,
        uint256 maxPricePerSegment,
        uint256 creationBlock
    );

    /// Creates a job broadcast by the caller and assigned to `_transcoder`,
    /// valid from this block to `_endBlock`.
    function createJob(
        string calldata _streamId,
        string calldata _transcodingOptions,
        address _transcoder,
        uint256 _endBlock
    ) external returns (uint256 jobId) {
        require(_transcoder != address(0), "no transcoder");
        require(_endBlock > block.number, "endBlock must be in the future");
        jobId = numJobs;
        numJobs = jobId + 1;
        Job storage job = jobs[jobId];
        job.streamId = _streamId;
        job.transcodingOptions = _transcodingOptions;
        job.broadcasterAddress = msg.sender;
        job.transcoderAddress = _transcoder;
        job.creationBlock = block.number;
        job.endBlock = _endBlock;
        emit NewJob(msg.sender, jobId, _streamId, _transcodingOptions, 0, block.number);
    }

    /// Livepeer's read layout; a job that does not exist reads as zeros.
    function getJob(uint256 _jobId)
        external
        view
        returns (
            string memory streamId,
            string memory transcodingOptions,
            uint256 maxPricePerSegment,
            address broadcasterAddress,
            address transcoderAddress,
            uint256 creationRound,
            uint256 creationBlock,
            uint256 endBlock,
            uint256 escrow,
            uint256 totalClaims
        )
    {
        Job storage job = jobs[_jobId];
        return (
            job.streamId,
            job.transcodingOptions,
            job.maxPricePerSegment,
            job.broadcasterAddress,
            job.transcoderAddress,
            job.creationRound,
            job.creationBlock,
            job.endBlock,
            0,
            0
        );
    }
}
