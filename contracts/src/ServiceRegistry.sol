// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// lpgpu's development service registry. It keeps the read ABI of Livepeer's
/// 2018 ServiceRegistry (`getServiceURI(address)`), so lpgpu reads either.
contract ServiceRegistry {
    mapping(address => string) private serviceURIs;

    event ServiceURIUpdate(address indexed addr, string serviceURI);

    /// Registers the caller's service URI (https://HOST:PORT).
    function setServiceURI(string calldata _serviceURI) external {
        serviceURIs[msg.sender] = _serviceURI;
        emit ServiceURIUpdate(msg.sender, _serviceURI);
    }

    function getServiceURI(address _addr) external view returns (string memory) {
        return serviceURIs[_addr];
    }
}
